"""Download the lock's artifacts into the store, in parallel, verifying every sha256.

An artifact already in the store (named by its sha256) is not downloaded again.
A download is hashed as it streams to ``tmp/`` and only renamed into the store
when its sha256 equals the lock's; a mismatch is a ``CheckFailed`` naming the
package, the expected and the actual hash.  Network errors are retried with
backoff; HTTP 4xx are not.  Credentials come from ``envlock.credentials`` (the lock's
``${VAR}`` index URLs for the same origin, else netrc); messages show the URL as the lock
writes it, never an expanded one.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from envlock import credentials
from envlock.errors import CheckFailed, EnvlockError, ServiceUnavailable, raise_all
from envlock.lockfile import Package
from envlock.store import CHUNK, Store
from envlock.urls import redact, redact_text

RETRIES = 3
TIMEOUT = 60

# (package, bytes done, bytes total or None)
Progress = Callable[[Package, int, int | None], None]


@dataclass(frozen=True)
class Fetched:
    package: Package
    path: Path
    downloaded: bool


def source_url(package: Package, lock_dir: Path) -> str:
    """Absolute URL of a lock entry (relative entries are relative to the lock's directory)."""
    if "://" in package.url:
        return package.url
    return urljoin(lock_dir.absolute().as_uri() + "/", package.url)


def _open(url: str, headers: Mapping[str, str]) -> tuple[object, int | None]:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        try:
            return path.open("rb"), path.stat().st_size
        except FileNotFoundError:
            raise CheckFailed(f"{path} does not exist", "restore the wheelhouse or re-lock") from None
    request = urllib.request.Request(url, headers={"User-Agent": "envlock"})
    for key, value in headers.items():  # not sent again after a redirect, to any host
        request.add_unredirected_header(key, value)
    response = urllib.request.urlopen(request, timeout=TIMEOUT)
    length = response.headers.get("Content-Length")
    return response, int(length) if length else None


def fetch_one(
    store: Store,
    package: Package,
    lock_dir: Path,
    progress: Progress | None = None,
    access: credentials.Access | None = None,
) -> Fetched:
    target = store.artifact_path(package.sha256)
    if target.is_file():
        return Fetched(package, target, False)
    shown = redact(source_url(package, lock_dir))  # the lock's form: placeholders, no values
    access = access or credentials.load((), [source_url(package, lock_dir)], os.environ)
    request = access.request(source_url(package, lock_dir))
    delay = 0.5
    for attempt in range(RETRIES + 1):
        writer = store.writer()
        try:
            stream, total = _open(request.url, request.headers)
            done = 0
            with stream:  # type: ignore[attr-defined]
                while chunk := stream.read(CHUNK):  # type: ignore[attr-defined]
                    writer.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(package, done, total)
                missing = getattr(stream, "length", None)  # Content-Length not delivered
                if isinstance(missing, int) and missing > 0:
                    raise http.client.IncompleteRead(b"", missing)
            actual = writer.hash.hexdigest()
            if actual != package.sha256:
                writer.abort()
                raise CheckFailed(
                    f"{package.name} {package.version}: sha256 mismatch for {package.filename}: "
                    f"expected {package.sha256}, got {actual}",
                    "the file changed since it was locked; nothing was built. "
                    "Re-lock only if you trust the new file",
                )
            writer.commit(target)
            return Fetched(package, target, True)
        except urllib.error.HTTPError as exc:
            writer.abort()
            if exc.code in (401, 403):
                raise ServiceUnavailable(
                    f"{package.name}: {shown} answered HTTP {exc.code} "
                    f"({'credentials refused' if request.authenticated else 'credentials needed'})",
                    "set the ${VAR} variables of the spec's index URL for this host, "
                    "or give the host's login in ~/.netrc (or $NETRC)",
                ) from None
            if 400 <= exc.code < 500:
                raise ServiceUnavailable(f"{package.name}: {shown} answered HTTP {exc.code}") from None
            error: Exception = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            writer.abort()
            if isinstance(exc, CheckFailed):
                raise
            error = exc
        except BaseException:
            writer.abort()
            raise
        if attempt < RETRIES:
            time.sleep(delay)
            delay *= 2
    detail = redact_text(str(error), [package.url], os.environ).replace(request.url, shown)[:200]
    reason = f"{type(error).__name__}: {detail}"
    raise ServiceUnavailable(
        f"cannot download {package.name} from {shown}: {reason}", "check the network and retry"
    )


def fetch_all(
    store: Store,
    packages: Sequence[Package],
    lock_dir: Path,
    *,
    workers: int = 8,
    progress: Progress | None = None,
    sources: Sequence[str] = (),
) -> dict[str, Path]:
    """Make every package's artifact present in the store; returns sha256 -> path.

    ``sources`` are the lock's index and channel URLs (``${VAR}`` form): their credentials
    are used for packages of the same origin, and every variable a download needs is
    checked before the first one starts.  All downloads are attempted; if any fail, every
    failure is raised together after the others finish (``envlock.errors.Problems``; what
    was verified stays in the store).
    """
    result: dict[str, Path] = {}
    errors: list[BaseException] = []
    todo = [p for p in packages if not store.has_artifact(p.sha256)]
    for p in packages:
        if store.has_artifact(p.sha256):
            result[p.sha256] = store.artifact_path(p.sha256)
    if not todo:
        return result
    access = credentials.load(sources, [source_url(p, lock_dir) for p in todo], os.environ)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
        futures = {pool.submit(fetch_one, store, p, lock_dir, progress, access): p for p in todo}
        for future in as_completed(futures):
            try:
                fetched = future.result()
                result[fetched.package.sha256] = fetched.path
            except BaseException as exc:
                errors.append(exc)
    expected = [e for e in errors if isinstance(e, EnvlockError)]
    if len(expected) < len(errors):
        raise next(e for e in errors if not isinstance(e, EnvlockError))
    raise_all(sorted(expected, key=lambda e: not isinstance(e, CheckFailed)))  # every failure, checks first
    return result
