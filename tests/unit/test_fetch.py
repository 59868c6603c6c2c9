"""fetch: local artifacts enter the store by sha256, verified; present ones are not read again."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from envlock.errors import CheckFailed
from envlock.fetch import fetch_all, fetch_one, source_url
from envlock.lockfile import Package
from envlock.store import Store


def write_file(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    path = tmp_path / "specs"
    path.mkdir()
    return path


def assert_clean(store: Store) -> None:
    assert list(store.artifacts.iterdir()) == []
    assert list(store.tmp.iterdir()) == []


def test_source_url_of_a_relative_entry_is_relative_to_the_lock(package, lock_dir: Path) -> None:
    pkg = package("demo", "1.0", url="wheels/demo-1.0-py3-none-any.whl")

    assert source_url(pkg, lock_dir) == (lock_dir / "wheels/demo-1.0-py3-none-any.whl").as_uri()


def test_source_url_of_an_absolute_url_is_unchanged(package, lock_dir: Path) -> None:
    pkg = package("demo", "1.0")

    assert source_url(pkg, lock_dir) == pkg.url


def test_fetch_all_stores_file_and_relative_artifacts_by_sha256(
    store: Store, lock_dir: Path, tmp_path: Path, package: Callable[..., Package]
) -> None:
    rel_sha = write_file(lock_dir / "wheels" / "a-1.0-py3-none-any.whl", b"wheel a")
    abs_path = tmp_path / "elsewhere" / "b-2.0-py3-none-any.whl"
    abs_sha = write_file(abs_path, b"wheel b")
    packages = [
        package("a", "1.0", url="wheels/a-1.0-py3-none-any.whl", sha256=rel_sha),
        package("b", "2.0", url=abs_path.as_uri(), sha256=abs_sha),
    ]

    result = fetch_all(store, packages, lock_dir)

    assert result == {rel_sha: store.artifact_path(rel_sha), abs_sha: store.artifact_path(abs_sha)}
    assert store.artifact_path(rel_sha).read_bytes() == b"wheel a"
    assert store.artifact_path(abs_sha).read_bytes() == b"wheel b"
    assert list(store.tmp.iterdir()) == []


def test_a_relative_path_with_spaces_is_found(store: Store, lock_dir: Path, package) -> None:
    sha = write_file(lock_dir / "my wheels" / "a-1.0-py3-none-any.whl", b"wheel")

    fetch_all(store, [package("a", "1.0", url="my wheels/a-1.0-py3-none-any.whl", sha256=sha)], lock_dir)

    assert store.has_artifact(sha)


def test_a_present_artifact_is_not_read_again(store: Store, lock_dir: Path, package) -> None:
    source = lock_dir / "a-1.0-py3-none-any.whl"
    sha = write_file(source, b"wheel a")
    pkg = package("a", "1.0", url=source.name, sha256=sha)
    fetch_all(store, [pkg], lock_dir)
    source.unlink()

    assert fetch_all(store, [pkg], lock_dir) == {sha: store.artifact_path(sha)}
    assert fetch_one(store, pkg, lock_dir).downloaded is False


def test_fetch_one_reports_a_download(store: Store, lock_dir: Path, package) -> None:
    sha = write_file(lock_dir / "a.whl", b"wheel a")

    fetched = fetch_one(store, package("a", "1.0", url="a.whl", sha256=sha), lock_dir)

    assert fetched.downloaded is True
    assert fetched.path == store.artifact_path(sha)


def test_a_wrong_sha256_names_the_package_and_both_hashes_and_stores_nothing(
    store: Store, lock_dir: Path, package
) -> None:
    actual = write_file(lock_dir / "a-1.0-py3-none-any.whl", b"changed since locking")
    expected = "0" * 64
    pkg = package("a", "1.0", url="a-1.0-py3-none-any.whl", sha256=expected)

    with pytest.raises(CheckFailed) as exc:
        fetch_all(store, [pkg], lock_dir)

    message = exc.value.message
    assert "a 1.0" in message
    assert "a-1.0-py3-none-any.whl" in message
    assert f"expected {expected}" in message
    assert f"got {actual}" in message
    assert exc.value.exit_code == 1
    assert_clean(store)


def test_a_wrong_sha256_does_not_stop_other_downloads(store: Store, lock_dir: Path, package) -> None:
    good = write_file(lock_dir / "good.whl", b"good")
    write_file(lock_dir / "bad.whl", b"bad")
    packages = [
        package("bad", "1.0", url="bad.whl", sha256="1" * 64),
        package("good", "1.0", url="good.whl", sha256=good),
    ]

    with pytest.raises(CheckFailed, match=r"bad 1\.0"):
        fetch_all(store, packages, lock_dir)

    assert [p.name for p in store.artifacts.iterdir()] == [good]
    assert list(store.tmp.iterdir()) == []


def test_a_missing_local_file_is_a_check_failure(store: Store, lock_dir: Path, package) -> None:
    pkg = package("gone", "1.0", url="wheels/gone-1.0-py3-none-any.whl", sha256="2" * 64)

    with pytest.raises(CheckFailed, match="does not exist") as exc:
        fetch_all(store, [pkg], lock_dir)

    assert "gone-1.0-py3-none-any.whl" in exc.value.message
    assert exc.value.hint is not None
    assert_clean(store)


def test_progress_is_called_with_package_done_and_total(store: Store, lock_dir: Path, package) -> None:
    data = b"w" * ((1 << 20) + 17)  # more than one chunk
    sha = write_file(lock_dir / "a.whl", data)
    pkg = package("a", "1.0", url="a.whl", sha256=sha)
    calls: list[tuple[Package, int, int | None]] = []

    fetch_all(store, [pkg], lock_dir, progress=lambda p, done, total: calls.append((p, done, total)))

    assert calls == [(pkg, 1 << 20, len(data)), (pkg, len(data), len(data))]


def test_progress_is_not_called_for_present_artifacts(store: Store, lock_dir: Path, package) -> None:
    sha = write_file(lock_dir / "a.whl", b"a")
    pkg = package("a", "1.0", url="a.whl", sha256=sha)
    fetch_all(store, [pkg], lock_dir)
    calls: list[object] = []

    fetch_all(store, [pkg], lock_dir, progress=lambda *args: calls.append(args))

    assert calls == []


def test_fetch_all_of_nothing_is_empty(store: Store, lock_dir: Path) -> None:
    assert fetch_all(store, [], lock_dir) == {}
