"""Environment references: turn what a user types into a lock, and list the repo's environments.

A reference is one of (tried in this order):

``sha256:HEX``          an env ID (or a prefix of one) of a lock in ``specs/*.lock``
``PATH.toml``           a spec: its lock (a stale lock is still used, and marked)
``PATH.lock``           a lock file
``LOCK@REV``            a lock (or a spec's lock) at a git revision
``NAME``                a spec ``specs/NAME.toml``, else a recorded model (``resolve_model``)
``NAME@REV``            a recorded model at a revision, else ``specs/NAME.lock`` at REV

Model names are resolved through :func:`resolve_model`, the seam the records feature
wires in; until then it knows no models.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from envlock import lockfile as lockmod
from envlock.diff import EnvDiff, diff_locks
from envlock.errors import EnvlockError, LockError, UsageError
from envlock.lockfile import Lock
from envlock.spec import discover, load

SPECS_DIR = "specs"


@dataclass(frozen=True)
class EnvRef:
    ref: str  # as the user wrote it
    label: str  # short name for display
    lock: Lock
    kind: str  # "spec" | "lock" | "git" | "env-id" | "model"
    path: Path | None = None  # the lock file, where there is one
    rev: str | None = None
    note: str = ""  # e.g. "stale: ..."


def resolve_model(ref: str, root: Path = Path()) -> Lock | None:
    """The lock a recorded model (``NAME``, ``NAME@REV`` or a record ID) was trained in,
    read from git at the record's commit; ``None`` when no record matches (or no repo)."""
    from envlock.gitcli import toplevel
    from envlock.rebuilding import lock_at_commit
    from envlock.recording import find

    top = toplevel(root.absolute())
    if top is None:
        return None
    try:
        rec = find(ref, top)
    except UsageError:
        return None
    return lock_at_commit(top, rec)


def _from_store(ref: str) -> tuple[str, Lock] | None:
    """An env ID whose image is in the local store: its environment, from the image."""
    from envlock.store import Store, default_home

    if not (default_home() / "envs").is_dir():
        return None
    store = Store()
    hits = [e for e in store.list_envs() if e.env_id.startswith(ref.lower())]
    if not hits:
        return None
    entry = hits[0]
    import tarfile

    try:
        return _stored_lock(store, entry)
    except (
        OSError,
        tarfile.TarError,
        LookupError,
        TypeError,
        ValueError,
        AttributeError,
        RecursionError,
    ) as exc:
        from envlock.errors import CheckFailed

        raise CheckFailed(
            f"the store's image {entry.image_id[:19]}… of env {entry.env_id[:19]}… cannot be read "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
            "check the store: envlock store fsck",
        ) from None


def _stored_lock(store: Any, entry: Any) -> tuple[str, Lock]:
    """The environment recorded in the last layer of a stored image (``opt/env/envlock.lock``)."""
    from envlock.image.build import load_image

    image = load_image(store, entry.manifest)
    import tarfile

    with tarfile.open(store.blob_path(image.layers[-1].digest)) as tar:
        member = tar.extractfile("opt/env/envlock.lock")
        text = member.read().decode() if member else ""
    import tomllib

    data = tomllib.loads(text)
    platforms = []
    for plat in data.get("platforms", []):
        packages = tuple(
            lockmod.Package(
                manager=p["manager"],
                name=p["name"],
                version=p["version"],
                url="",
                sha256=p["sha256"],
                build=p.get("build"),
                channel=p.get("channel"),
                subdir=p.get("subdir"),
            )
            for p in plat.get("packages", [])
        )
        platforms.append(
            lockmod.PlatformLock(
                name=plat["name"],
                python=plat["python"],
                cuda=plat.get("cuda", "cpu"),
                base=plat.get("base", ""),
                base_digest=plat.get("base-digest", ""),
                env=tuple(sorted(plat.get("env", {}).items())),
                workdir=plat.get("workdir", "/workspace"),
                system=tuple(plat.get("system", [])),
                bytecode=bool(plat.get("bytecode", False)),
                packages=packages,
            )
        )
    return entry.name, lockmod.Lock(env_id=data["env-id"], spec_hash="", platforms=tuple(platforms))


def _spec_names(root: Path) -> list[str]:
    return [p.stem for p in discover(root / SPECS_DIR)] if (root / SPECS_DIR).is_dir() else []


def _from_spec(ref: str, spec_path: Path, label: str | None = None) -> EnvRef:
    spec = load(spec_path, strict=False)
    path = spec_path.with_suffix(".lock")
    lock = lockmod.read(path)
    note = ""
    if lock.spec_hash != spec.spec_hash:
        note = f"stale: {spec_path} changed since it was locked"
    return EnvRef(ref, label or spec.name, lock, "spec", path, None, note)


def _at_rev(ref: str, target: Path, rev: str) -> EnvRef:
    from envlock.history import lock_at

    path = target.with_suffix(".lock") if target.suffix == ".toml" else target
    return EnvRef(ref, ref, lock_at(path, rev), "git", path, rev)


def _by_env_id(ref: str, root: Path) -> EnvRef:
    wanted = ref.lower()
    found: list[tuple[Path, Lock]] = []
    specs_dir = root / SPECS_DIR
    for path in sorted(specs_dir.glob("*.lock")) if specs_dir.is_dir() else []:
        try:
            lock = lockmod.read(path)
        except LockError:
            continue
        if lock.env_id.startswith(wanted):
            found.append((path, lock))
    if not found:
        stored = _from_store(ref)
        if stored is not None:
            name, lock = stored
            return EnvRef(ref, f"{lock.env_id[:19]} ({name}, store)", lock, "env-id")
        raise UsageError(
            f"no lock in {specs_dir} and no image in the store has env ID {ref}",
            "env IDs are looked up in specs/*.lock and the local store; "
            "for an older lock name it by revision: specs/NAME.lock@REV",
        )
    if len({lock.env_id for _, lock in found}) > 1:
        names = ", ".join(str(p) for p, _ in found)
        raise UsageError(f"env ID {ref} is ambiguous: {names}", "give more of the hex digits")
    path, lock = found[0]
    return EnvRef(ref, f"{lock.env_id[:19]} ({path.stem})", lock, "env-id", path)


def _not_found(ref: str, root: Path) -> UsageError:
    names = _spec_names(root)
    close = difflib.get_close_matches(ref.split("@", 1)[0], names, n=3)
    if close:
        hint = f"did you mean: {', '.join(close)}?"
    elif names:
        hint = f"environments in {root / SPECS_DIR}: {', '.join(names)}"
    else:
        hint = "name a spec, a lock, LOCK@REV or an env ID (sha256:...)"
    return UsageError(f"no environment named {ref}", hint)


def resolve(ref: str, root: Path = Path()) -> EnvRef:
    """The lock that ``ref`` names; a ``UsageError`` with a hint when it names nothing."""
    if not ref:
        raise UsageError("empty environment reference", "name a spec, a lock or an env ID")
    if ref.startswith("sha256:"):
        return _by_env_id(ref, root)
    as_path = root / ref  # relative references are relative to the repository root
    if as_path.is_file():
        if as_path.suffix == ".toml":
            return _from_spec(ref, as_path, ref)
        return EnvRef(ref, ref, lockmod.read(as_path), "lock", as_path)
    if "@" in ref:
        target, rev = ref.rsplit("@", 1)
        if target and rev and (Path(target).suffix in (".lock", ".toml") or (root / target).exists()):
            return _at_rev(ref, root / target, rev)
        model = resolve_model(ref, root)
        if model is not None:
            return EnvRef(ref, ref, model, "model", rev=rev or None)
        named = root / SPECS_DIR / f"{target}.lock"
        if target and rev and (named.is_file() or named.with_suffix(".toml").is_file()):
            return _at_rev(ref, named, rev)
        raise _not_found(ref, root)
    if as_path.suffix in (".toml", ".lock"):
        if as_path.exists():
            raise _not_a_file(ref, as_path)
        hint = f"a lock is made with: envlock lock {Path(ref).with_suffix('.toml')}"
        raise UsageError(f"{ref}: no such file", hint)
    spec = root / SPECS_DIR / f"{ref}.toml"
    if spec.is_file():
        return _from_spec(ref, spec)
    model = resolve_model(ref, root)
    if model is not None:
        return EnvRef(ref, ref, model, "model")
    if as_path.exists():
        raise _not_a_file(ref, as_path)
    raise _not_found(ref, root)


def _not_a_file(ref: str, path: Path) -> UsageError:
    """A reference that names something on disk that is not a spec or lock file."""
    what = "a directory" if path.is_dir() else "not a regular file (a device, fifo or socket)"
    return UsageError(
        f"{ref}: {what}, not a spec or lock", "name a spec, a lock, LOCK@REV, a model NAME[@REV] or an env ID"
    )


def compare(a: str, b: str, root: Path = Path()) -> EnvDiff:
    """Resolve two references and diff their locks; stale sides carry a note."""
    left, right = resolve(a, root), resolve(b, root)
    diff = diff_locks(left.lock, right.lock, left.label, right.label)
    return replace(diff, a=replace(diff.a, note=left.note), b=replace(diff.b, note=right.note))


@dataclass(frozen=True)
class EnvStatus:
    """One spec of the repository and the state of its lock."""

    name: str
    spec_path: Path
    lock_path: Path
    state: str  # "fresh" | "stale" | "missing" | "invalid"
    env_id: str  # "" where there is no readable lock
    packages: int  # over all platforms
    platforms: tuple[str, ...]
    problem: str = ""  # why the state is not "fresh", with its hint

    @property
    def short_id(self) -> str:
        return self.env_id[:19] if self.env_id else ""


def _status(spec_path: Path) -> EnvStatus:
    from envlock.locking import fresh_lock, lock_path

    path = lock_path(spec_path)
    try:
        spec = load(spec_path, strict=False)
    except EnvlockError as exc:
        return EnvStatus(spec_path.stem, spec_path, path, "invalid", "", 0, (), exc.message)
    fresh = fresh_lock(spec)
    if fresh is not None:
        count = sum(len(p.packages) for p in fresh.platforms)
        return EnvStatus(spec.name, spec_path, path, "fresh", fresh.env_id, count, spec.platforms)
    if not path.is_file():
        return EnvStatus(
            spec.name, spec_path, path, "missing", "", 0, spec.platforms,
            f"no lock; create it with: envlock lock {spec_path}",
        )  # fmt: skip
    try:
        lock = lockmod.read(path)
    except EnvlockError as exc:
        return EnvStatus(spec.name, spec_path, path, "invalid", "", 0, spec.platforms, exc.message)
    count = sum(len(p.packages) for p in lock.platforms)
    why = "the spec changed" if lock.spec_hash != spec.spec_hash else "lock or exports differ"
    return EnvStatus(
        spec.name, spec_path, path, "stale", lock.env_id, count, lock.platform_names,
        f"{why}; run: envlock lock {spec_path} (or envlock verify for details)",
    )  # fmt: skip


def environments(root: Path = Path()) -> list[EnvStatus]:
    """Every ``specs/*.toml`` of the repository with its lock state."""
    specs_dir = root / SPECS_DIR
    return [_status(p) for p in discover(specs_dir)] if specs_dir.is_dir() else []
