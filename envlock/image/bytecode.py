"""Byte code for an image's packages (PEP 552), compiled by the base image's own interpreter.

Opt-in (``[image] bytecode = true``): a byte-code layer per package layer, holding
``__pycache__/*.pyc`` for every ``.py`` file in ``site-packages``, as ``pip install``
would compile them.  Three choices keep the bytes a function of the lock and the base:

* **The base's interpreter compiles.**  Its ``python3.X``, standard library and shared
  libraries are copied out of the base's layers and run through the base's own dynamic
  loader: no container, no root, and never the host's Python, whose patch release
  (and so its compiler) differs from machine to machine.
* **marshal format 2.**  Formats 3 and 4 mark objects for back-references by their
  *reference count*, which depends on what else the compiling process holds; format 2
  has no back-references, so it depends on the code alone.  ``PYTHONHASHSEED=0`` fixes
  the order of set constants.  Every Python 3 reads format 2.
* **Checked hashes.**  The ``.pyc`` carries the source's hash, not its mtime (layers have
  none); Python checks it on import, so a source edited in a running container is still
  honoured rather than shadowed by stale byte code.

Files that do not compile (templates, Python 2 leftovers) get no ``.pyc``, as with pip.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from envlock import sandbox
from envlock.errors import CheckFailed, ToolMissing
from envlock.image import layer as layermod
from envlock.image.extract import UnsafeMember, boundary, clear, member_name, resolve_inside
from envlock.image.venv import Interpreter
from envlock.store import Store, canonical_json

FORMAT = "envlock-bytecode/1"
MARSHAL_VERSION = 2
FLAGS = 0b11  # PEP 552: hash-based, checked against the source on import

# Run by the base's interpreter: read (path, source) frames on stdin, answer with .pyc
# bytes (empty when the source does not compile).  Python 3.6+ syntax only.
DRIVER = r"""
import sys
sys.path[:] = [p for p in sys.path if p]
import importlib.util, marshal, struct, warnings
warnings.simplefilter("ignore")
rd, wr = sys.stdin.buffer, sys.stdout.buffer
def take(n):
    data = rd.read(n)
    if len(data) != n:
        raise SystemExit(0 if not data else 3)
    return data
head = sys.implementation.cache_tag.encode() + b" " + importlib.util.MAGIC_NUMBER.hex().encode()
wr.write(struct.pack(">I", len(head)) + head)
wr.flush()
while True:
    first = rd.read(4)
    if not first:
        break
    path = take(struct.unpack(">I", first)[0]).decode("utf-8", "surrogateescape")
    source = take(struct.unpack(">I", take(4))[0])
    try:
        code = compile(source, path, "exec", dont_inherit=True, optimize=0)
    except Exception:
        out = b""
    else:
        out = (importlib.util.MAGIC_NUMBER + struct.pack("<I", @FLAGS@)
               + importlib.util.source_hash(source) + marshal.dumps(code, @MARSHAL@))
    wr.write(struct.pack(">I", len(out)) + out)
    wr.flush()
""".replace("@FLAGS@", str(FLAGS)).replace("@MARSHAL@", str(MARSHAL_VERSION))

_LIB_DIRS = ("lib", "lib64", "usr/lib", "usr/lib64", "usr/local/lib")
_SHARED = re.compile(r"^(?:usr/)?(?:local/)?lib(?:64|32)?/(?:x86_64-linux-gnu/)?[^/]+\.so(?:\.[0-9.]+)?$")
LOADER = "lib64/ld-linux-x86-64.so.2"


def layer_key(package_layer_key: str, base_digest: str, interp: Interpreter) -> str:
    """The byte code of one package layer, as compiled by one base's interpreter."""
    data = {"format": FORMAT, "layer": package_layer_key, "base": base_digest, "interpreter": interp.path}
    return hashlib.sha256(canonical_json(data)).hexdigest()


def sources(entries: Sequence[layermod.Entry], interp: Interpreter) -> list[tuple[str, bytes]]:
    """``(image path, source)`` for each ``.py`` file of a package layer in ``site-packages``."""
    site = f"opt/env/lib/python{interp.version}/site-packages/"
    out: list[tuple[str, bytes]] = []
    archives: dict[Path, zipfile.ZipFile] = {}
    try:
        for e in sorted(entries, key=lambda e: e.path):
            if e.kind != "file" or not e.path.startswith(site) or not e.path.endswith(".py"):
                continue
            if e.data is not None:
                data = e.data
            elif e.member and e.source is not None:
                with boundary(f"wheel {e.source.name}"):
                    if e.source not in archives:
                        archives[e.source] = zipfile.ZipFile(e.source)
                    data = archives[e.source].read(e.member)
            else:
                assert e.source is not None
                data = e.source.read_bytes()
            out.append(("/" + e.path, data))
    finally:
        for archive in archives.values():
            archive.close()
    return out


def pyc_path(source_path: str, cache_tag: str) -> str:
    """``a/b/mod.py`` -> ``a/b/__pycache__/mod.<tag>.pyc`` (what ``importlib`` looks for)."""
    head, name = posixpath.split(source_path.strip("/"))
    return f"{head}/__pycache__/{name[:-3]}.{cache_tag}.pyc"


# -- the base's interpreter, outside the base ----------------------------------------------


@dataclass(frozen=True)
class Runtime:
    root: Path  # the base's interpreter, libraries and standard library, copied out
    interp: Interpreter

    def command(self) -> list[str]:
        """The sandboxed command line: the base's loader runs its interpreter inside a
        bubblewrap sandbox whose ``/`` is this copy, read-only, with no network, no host
        path and a private ``/tmp`` (what a base runs can touch nothing of the host's).

        Raises:
            CheckFailed: the copy has no loader or no interpreter.
            ToolMissing: bubblewrap is not installed (exit 3).
        """
        if _inside(self.root, LOADER) is None:
            raise CheckFailed(
                f"the base has no dynamic loader at /{LOADER}, so its Python cannot compile byte code here",
                "set bytecode = false, or use a glibc-based x86_64 base such as debian:bookworm",
            )
        if _inside(self.root, self.interp.path) is None:
            raise CheckFailed(f"the base's interpreter {self.interp.path} could not be copied out of it")
        libs = ":".join(f"/{d}/{sub}".rstrip("/") for d in _LIB_DIRS for sub in ("x86_64-linux-gnu", ""))
        argv = [f"/{LOADER}", "--library-path", libs, self.interp.path, "-S", "-B", "-s", "-c", DRIVER]
        return sandbox.command(self.box(), argv)

    def box(self) -> sandbox.Sandbox:
        """Only the copy, read-only, as ``/``; no network; the compiler's environment."""
        return sandbox.Sandbox(mounts=(sandbox.Mount(self.root, "/"),), env=self.env(), cwd="/")

    def env(self) -> dict[str, str]:
        home = self.interp.path.rsplit("/", 2)[0]  # /usr/bin/python3.11 -> /usr
        return {"PYTHONHOME": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


@contextlib.contextmanager
def runtime(
    store: Store, layers: Sequence[IO[bytes]], interp: Interpreter, names: Sequence[str] = ()
) -> Iterator[Runtime]:
    """Copy what the base's Python needs to run out of its layers (uncompressed tar
    streams, bottom first; ``names`` their digests, for messages) into the store's
    ``tmp/``; removed afterwards.

    Members are confined to the copy (:mod:`envlock.image.extract`): a name with ``..`` or
    an absolute one is an error, symlinks are resolved inside the copy only.

    Raises:
        CheckFailed: a layer that cannot be read or holds a member that would leave the copy.
    """
    root = Path(tempfile.mkdtemp(prefix="runtime-", dir=store.tmp))
    try:
        version = interp.version
        home = interp.path.rsplit("/", 2)[0].strip("/")
        wanted = re.compile(
            rf"^(?:{re.escape(interp.path.strip('/'))}|{re.escape(home)}/lib/python{re.escape(version)}/.*"
            rf"|{re.escape(LOADER)})$"
        )
        for i, stream in enumerate(layers):
            label = f"base layer {names[i] if i < len(names) else i + 1}"
            with boundary(label), tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = member.name.removeprefix("./").rstrip("/")
                    if member.isdir() or not (
                        wanted.match(name) or _SHARED.match(name) or name in ("lib", "lib64", "lib32")
                    ):
                        continue
                    if "/test/" in name and name.startswith(f"{home}/lib/python"):
                        continue  # the standard library's own tests: a third of its size
                    _extract(tar, member, root)
        for mount_point in ("proc", "dev", "tmp"):  # where the sandbox mounts its own
            (root / mount_point).mkdir(exist_ok=True)
        yield Runtime(root, interp)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    """One member into the copy, as the base's root file system would hold it: through
    symlinks resolved inside ``root`` (never the host's), never over a directory."""
    name = member_name(member.name)
    head, _, leaf = name.rpartition("/")
    parent = resolve_inside(root, head, follow_last=True) if head else root
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / leaf
    clear(target, name)
    if member.issym():
        target.symlink_to(member.linkname)  # any target: it is resolved inside the copy
    elif member.islnk():
        source = resolve_inside(root, member_name(member.linkname))
        if source.is_file() and not source.is_symlink():
            os.link(source, target)  # (a link to a file that was not wanted is left out)
    elif member.isfile():
        fh = tar.extractfile(member)
        assert fh is not None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with fh, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(fh, out, 1 << 20)
        target.chmod(0o755 if member.mode & 0o111 else 0o644)


def _inside(root: Path, path: str) -> Path | None:
    """``path`` as the base sees it, symlinks followed inside ``root`` (absolute ones too);
    ``None`` when it does not exist there or the links loop."""
    try:
        found = resolve_inside(root, path, follow_last=True)
    except UnsafeMember:
        return None
    return found if found.exists() else None


# -- compiling -------------------------------------------------------------------------------


def compile_all(
    rt: Runtime, files: Sequence[tuple[str, bytes]], workers: int, stop: threading.Event | None = None
) -> tuple[str, list[bytes]]:
    """Compile ``files`` on ``workers`` processes of the base's interpreter.

    Returns the interpreter's cache tag and each file's ``.pyc`` (``b""`` when it does
    not compile), in the order given.  Which process compiles which file does not
    change a byte (format 2 has no back-references).
    """
    workers = max(1, min(workers, len(files)))
    results: list[bytes] = [b""] * len(files)
    tags: list[str] = [""] * workers
    errors: list[BaseException] = []

    def drive(k: int) -> None:
        try:
            tags[k] = _drive(rt, [(i, files[i]) for i in range(k, len(files), workers)], results, stop)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(k,), name=f"envlock-compile-{k}") for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    if len(set(tags)) != 1:
        raise CheckFailed(f"the base's interpreter reported different cache tags: {sorted(set(tags))}")
    return tags[0], results


Work = list[tuple[int, tuple[str, bytes]]]


def _drive(rt: Runtime, work: Work, results: list[bytes], stop: threading.Event | None) -> str:
    with tempfile.TemporaryFile() as errors:  # not a pipe: a chatty compiler must not block on it
        return _drive_with(rt, work, results, errors, stop)


ANSWER_SECONDS = 300.0  # the longest the base's Python may take to answer for one file
MAX_FRAME = 256 << 20  # the largest answer taken from it (a .pyc, or its greeting)


class _Deadline:
    """Kills ``proc`` when it has not answered within ``seconds`` of the last renewal: a
    base's compiler that hangs (or is made to) must not hang the build."""

    def __init__(self, proc: subprocess.Popen[bytes], seconds: float) -> None:
        self.proc, self.seconds = proc, seconds
        self.expired = False
        self._at = time.monotonic() + seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="envlock-compile-deadline", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        self._at = time.monotonic() + self.seconds

    def _watch(self) -> None:
        while not self._done.wait(max(0.0, min(1.0, self._at - time.monotonic()))):
            if time.monotonic() >= self._at:
                self.expired = True
                self.proc.kill()
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def _drive_with(
    rt: Runtime, work: Work, results: list[bytes], errors: IO[bytes], stop: threading.Event | None
) -> str:
    try:
        proc = subprocess.Popen(rt.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
    except OSError as exc:
        raise ToolMissing(
            f"cannot run the base's Python to compile byte code: {exc}",
            "set bytecode = false in the spec's [image] table",
        ) from None
    assert proc.stdin is not None and proc.stdout is not None
    deadline = _Deadline(proc, ANSWER_SECONDS)
    try:
        tag = _cache_tag(_frame(proc, rt, errors, deadline), rt)
        for i, (path, source) in work:
            if stop is not None and stop.is_set():
                raise CheckFailed("byte code compilation was stopped")
            encoded = path.encode("utf-8", "surrogateescape")
            proc.stdin.write(struct.pack(">I", len(encoded)) + encoded + struct.pack(">I", len(source)))
            proc.stdin.write(source)
            proc.stdin.flush()
            deadline.renew()
            results[i] = _frame(proc, rt, errors, deadline)
        proc.stdin.close()
        if proc.wait() != 0:
            raise _failed(proc, rt, errors, deadline)
        return tag
    except BrokenPipeError:
        raise _failed(proc, rt, errors, deadline) from None
    finally:
        deadline.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _cache_tag(head: bytes, rt: Runtime) -> str:
    """The interpreter's ``sys.implementation.cache_tag`` from its first answer; it names
    ``.pyc`` files in the image, so nothing but a plain file-name part is accepted."""
    words = head.split()
    tag = words[0].decode("ascii", "replace") if words else ""
    if not _TAG.fullmatch(tag):
        raise CheckFailed(
            f"the base's Python ({rt.interp.path}) answered {head[:60]!r} instead of its cache tag",
            "set bytecode = false in the spec's [image] table, or check the base",
        )
    return tag


def _frame(proc: subprocess.Popen[bytes], rt: Runtime, errors: IO[bytes], deadline: _Deadline) -> bytes:
    """One answer: a 4-byte big-endian length, then that many bytes (at most MAX_FRAME)."""
    assert proc.stdout is not None
    head = proc.stdout.read(4)
    if len(head) != 4:
        raise _failed(proc, rt, errors, deadline)
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        proc.kill()
        raise CheckFailed(
            f"the base's Python ({rt.interp.path}) answered with {size} bytes, more than a .pyc can be",
            "set bytecode = false in the spec's [image] table, or check the base",
        )
    data = proc.stdout.read(size)
    if len(data) != size:
        raise _failed(proc, rt, errors, deadline)
    return data


def _failed(
    proc: subprocess.Popen[bytes], rt: Runtime, errors: IO[bytes], deadline: _Deadline
) -> CheckFailed:
    proc.kill()
    proc.wait()
    if deadline.expired:
        return CheckFailed(
            f"the base's Python ({rt.interp.path}) did not answer within {deadline.seconds:g} s "
            "while compiling byte code",
            "set bytecode = false in the spec's [image] table, or check the base",
        )
    errors.seek(0)
    err = errors.read().decode(errors="replace").strip()
    last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
    return CheckFailed(
        f"the base's Python ({rt.interp.path}) failed while compiling byte code: {last}",
        "set bytecode = false in the spec's [image] table, or report the base and the package",
    )


def layer_entries(
    files: Sequence[tuple[str, bytes]], pycs: Sequence[bytes], tag: str
) -> list[layermod.Entry]:
    pairs = zip(files, pycs, strict=True)
    return [layermod.file(pyc_path(path, tag), pyc) for (path, _), pyc in pairs if pyc]
