"""Archive members on the host: names, link targets and paths confined to one root.

envlock unpacks archives it does not trust (conda packages, a base image's layers) into
directories of its own under the store's ``tmp/``.  Everything here holds one rule: nothing
outside the root is ever read, written, moved or followed.

* :func:`member_name` turns a member's name into a relative path with no ``..``, no leading
  ``/``, no empty parts, valid UTF-8 (tar's ``surrogateescape`` names are refused).
* :func:`link_target` accepts a symlink's target only in the canonical form ``../`` x k then
  names, with k no deeper than the link's own directory.  A target of that form can be
  followed from a real directory without ever leaving the root, whatever other links it
  meets on the way (each of them obeys the same rule), so chains of links are confined too.
* :func:`real_parent` and :func:`regular_file` reach a path inside the root without
  following any symlink (conda packages), and :func:`resolve_inside` follows symlinks the
  way the kernel would inside a chroot at the root (a base image's files): absolute
  targets start at the root, ``..`` stops at it.
* :func:`boundary` is the one place where an archive's failures become one
  :class:`~envlock.errors.CheckFailed` naming the archive.

In the spirit of Python's ``tarfile`` "data" filter (PEP 706), stricter where a package
never needs more: absolute names are refused rather than stripped, link targets must be in
the canonical form above, hard links may only name a regular file.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envlock.errors import CheckFailed

MAX_HOPS = 40  # symlinks followed while resolving one path (Linux's MAXSYMLINKS)


class UnsafeMember(CheckFailed):
    """An archive member that would leave its root or is of a kind envlock does not unpack
    (exit 1: the archive, verified against the lock, fails envlock's checks)."""


def member_name(name: object) -> str:
    """A member's name as a relative POSIX path: ``./`` and ``.`` parts, repeated and
    trailing slashes dropped; ``""`` for the root itself.

    Raises:
        UnsafeMember: not a string, absolute, any ``..`` part, a NUL byte, or not UTF-8.
    """
    if not isinstance(name, str):
        raise UnsafeMember(f"member name {name!r} is not a string")
    shown = repr(name)[:120]
    if "\0" in name:
        raise UnsafeMember(f"member {shown} has a NUL byte in its name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeMember(f"member {shown} has a name that is not UTF-8") from None
    if name.startswith("/"):
        raise UnsafeMember(f"member {shown} has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMember(f"member {shown} has '..' in its path")
    return "/".join(parts)


def link_target(member: str, target: object) -> str:
    """The target of symlink ``member`` (a :func:`member_name`), checked and normalised.

    Accepted: a relative target that is ``k`` times ``..`` followed by names, with ``k`` no
    more than the depth of the link's directory (so the link lands inside the root, and so
    does any chain of such links).  ``.`` parts and repeated slashes are dropped.

    Raises:
        UnsafeMember: absolute, empty, ``..`` after a name (``a/..``), too many ``..``, NUL,
            not UTF-8, not a string.
    """
    if not isinstance(target, str):
        raise UnsafeMember(f"symlink {member!r} has a target {target!r} that is not a string")
    shown = f"symlink {member!r} -> {target!r}"[:200]
    if "\0" in target or target == "":
        raise UnsafeMember(f"{shown} has an empty target or a NUL byte in it")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeMember(f"{shown} has a target that is not UTF-8") from None
    if target.startswith("/"):
        raise UnsafeMember(f"{shown} points to an absolute path")
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ".." in parts[ups:]:
        raise UnsafeMember(f"{shown} has '..' after a name; write it without (envlock does not follow it)")
    depth = member.count("/")  # directories above the link, inside the root
    if ups > depth:
        raise UnsafeMember(f"{shown} points outside the package")
    return "/".join(parts) or "."


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _parents(root: Path, name: str, create: bool) -> Path | None:
    current = root
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        current = current / part
        st = _lstat(current)
        if st is None:
            if not create:
                return None
            current.mkdir()
        elif not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnsafeMember(f"member {name!r} lies under {'/'.join(parts[: i + 1])!r}, which is {kind}")
    return root / name


def real_parent(root: Path, name: str) -> Path:
    """``root/name``, after checking that every directory above it is a real directory
    (never a symlink, never a file); missing ones are made.

    ``name`` is a :func:`member_name`.  Nothing is followed, so nothing outside ``root`` is
    touched.

    Raises:
        UnsafeMember: a directory on the way is a symlink or not a directory.
    """
    path = _parents(root, name, create=True)
    assert path is not None
    return path


def existing(root: Path, name: str) -> Path | None:
    """``root/name`` when it exists (a symlink counts, unfollowed) under real directories
    only; ``None`` when it or a directory above it is missing.

    Raises:
        UnsafeMember: a directory above it is a symlink or not a directory.
    """
    path = _parents(root, name, create=False)
    return path if path is not None and _lstat(path) is not None else None


def regular_file(root: Path, name: str) -> Path | None:
    """``root/name`` when it is a regular file reached through real directories only;
    ``None`` when it does not exist.

    Raises:
        UnsafeMember: it, or a directory above it, is a symlink or of another kind.
    """
    path = existing(root, name)
    if path is None:
        return None
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
        raise UnsafeMember(f"member {name!r} is {kind}")
    return path


def read_regular(root: Path, name: str, limit: int = 256 << 20) -> bytes | None:
    """The bytes of :func:`regular_file` ``root/name`` (``None`` when missing), opened with
    ``O_NOFOLLOW`` so that not even a race makes it read through a link.

    Raises:
        UnsafeMember: a symlink or not a regular file, or larger than ``limit`` bytes.
    """
    path = regular_file(root, name)
    if path is None:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeMember(f"member {name!r} is larger than {limit >> 20} MiB")
    return data


def clear(path: Path, name: str) -> None:
    """Make room for a new member at ``path`` (replacing a file or symlink, never following
    it); a directory there is an error, as is a member that would replace it."""
    st = _lstat(path)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeMember(f"member {name!r} would replace a directory")
    path.unlink()


def resolve_inside(root: Path, name: str, *, follow_last: bool = False) -> Path:
    """``name`` as a process chrooted at ``root`` sees it: symlinks followed inside ``root``
    only (absolute targets start at ``root``, ``..`` stops at it), the last part followed
    only with ``follow_last``.  Missing directories are not created.

    Raises:
        UnsafeMember: more than :data:`MAX_HOPS` symlinks (a loop).
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        st = _lstat(candidate)
        if st is not None and stat.S_ISLNK(st.st_mode) and (parts or follow_last):
            hops += 1
            if hops > MAX_HOPS:
                raise UnsafeMember(f"member {name!r}: too many levels of symbolic links")
            target = str(candidate.readlink())
            if target.startswith("/"):
                current = root
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current = candidate
    return current


@contextmanager
def boundary(label: str, *more: type[BaseException], hint: str | None = None) -> Iterator[None]:
    """Where an archive is read: any failure inside becomes ONE ``CheckFailed`` whose
    message starts with ``label`` (the package and the file, or the layer).

    Caught: :class:`UnsafeMember` (and any ``CheckFailed`` not naming ``label`` yet),
    ``OSError``, ``EOFError``, ``ValueError`` (JSON, UTF-8, zip and tar headers),
    ``tarfile.TarError``, ``zipfile.BadZipFile``, ``zlib.error``, and the exception types in
    ``more`` (a decompressor's or a parser's own).
    """
    hint = hint or "the archive is malformed or hostile; nothing was built from it"
    caught: tuple[type[BaseException], ...] = (
        OSError,
        EOFError,
        ValueError,
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
        *more,
    )
    try:
        yield
    except CheckFailed as exc:
        if exc.message.startswith(label):
            raise
        raise CheckFailed(f"{label}: {exc.message}", exc.hint or hint) from None
    except caught as exc:
        raise CheckFailed(f"{label}: cannot read it: {_detail(exc)}", hint) from None


def _detail(exc: BaseException) -> str:
    """One line about ``exc``: its message (the last string argument for exceptions that
    carry an object first, such as installer's), else its type."""
    args = exc.args
    if len(args) > 1 and not isinstance(args[0], (str, bytes, int)) and isinstance(args[-1], str):
        text = args[-1]
    else:
        text = str(exc)
    lines = text.strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
