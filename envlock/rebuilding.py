"""``envlock rebuild``: record -> lock at its commit -> image -> verified -> run or print.

The lock is read from git at the recorded commit (never the working tree) and
its env ID checked against the record.  The image is reused from the store,
pulled from the recorded registry reference, or rebuilt; its ID must equal the
recorded one, and when it does not, the error names the first layer that differs.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, UsageError
from envlock.gitcli import cat_files, git
from envlock.image.build import BuildResult, build_lock, load_image
from envlock.image.model import Image
from envlock.manifest import Record
from envlock.recording import commit_exists, find, repo_root
from envlock.store import Store, holding_store

Say = Callable[[str], None]


@dataclass(frozen=True)
class Rebuilt:
    record: Record
    image: Image
    how: str  # "store" | "registry" | "built"
    worktree: Path | None

    @property
    def image_id(self) -> str:
        return self.image.image_id


def lock_at_commit(root: Path, rec: Record) -> lockmod.Lock:
    """The lock the record names, read from git at the recorded commit, env ID checked.

    Raises:
        CheckFailed: the commit or the lock is missing, the lock is not UTF-8 TOML in
            envlock's format, was edited, or has another env ID than the record.
    """
    commit, path = rec.commit, rec.lock
    if not commit_exists(root, commit):
        raise CheckFailed(
            f"commit {commit[:12]} of record {rec.id} ({rec.name}) is not in this repository",
            "the clone may be shallow or history rewritten: git fetch --unshallow, then envlock sync",
        )
    (text,) = cat_files([f"{commit}:{path}"], root)
    if text is None:
        raise CheckFailed(
            f"{path} does not exist at commit {commit[:12]}",
            "the record points at a lock that was never committed",
        )
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckFailed(f"{path} at {commit[:12]} is not UTF-8 text", "the record names a lock") from None
    lock = lockmod.parse(decoded, f"{path}@{commit[:12]}")
    problems = lockmod.problems(lock)
    if problems:
        raise CheckFailed(f"{path} at {commit[:12]} is not intact: {problems[0]}")
    if lock.env_id != rec.env_id:
        raise CheckFailed(
            f"{path} at {commit[:12]} has env ID {lock.env_id[:19]}…, the record says {rec.env_id[:19]}…",
            "the note was edited or belongs to another lock",
        )
    return lock


def explain_mismatch(rec: Record, image: Image) -> str:
    """Which layer differs between the recorded image and the rebuilt one, and why.

    Base layers are compared as a group (a base that changed is one cause, however
    many layers it has), then envlock's own layers one by one.
    """
    recorded = [(la.diff_id, la.created_by) for la in rec.layers]
    rebuilt = [(la.diff_id, la.created_by) for la in image.layers]
    labels = image.config.get("config", {}).get("Labels", {})
    was_base = [d for d, c in recorded if c == "base"]
    now_base = [d for d, c in rebuilt if c == "base"]
    if was_base != now_base:
        return (
            f"the base image {rec.base_reference} differs: recorded "
            f"{rec.base_digest[:19]}… ({len(was_base)} layers), now "
            f"{str(labels.get('org.opencontainers.image.base.digest', ''))[:19]}… ({len(now_base)} layers); "
            "it no longer resolves to the same bytes (a Debian mirror moves on, a tag is re-pushed)"
        )
    ours_was = [(d, c) for d, c in recorded if c != "base"]
    ours_now = [(d, c) for d, c in rebuilt if c != "base"]
    for i, (was, now) in enumerate(zip(ours_was, ours_now, strict=False)):
        if was[0] != now[0]:
            return (
                f"layer {len(was_base) + i + 1} ({was[1] or 'layer'}) differs: "
                f"recorded {was[0][:19]}…, now {now[0][:19]}…"
            )
    if len(ours_was) != len(ours_now):
        return f"the recorded image has {len(recorded)} layers, the rebuilt one {len(rebuilt)}"
    return "the layers match but the image config differs (labels, environment or envlock version)"


@holding_store
def rebuild(
    ref: str,
    *,
    cwd: Path,
    store: Store,
    worktree: Path | None = None,
    say: Say | None = None,
    cache: str | None = None,
) -> Rebuilt:
    """Bring back the image of the record ``ref``: from the store, its registry, or built
    from the recorded lock (layers taken from the build ``cache`` REGISTRY/REPO where it has
    them); a built image must have the recorded image ID (``CheckFailed`` otherwise)."""
    say = say or (lambda _m: None)
    root = repo_root(cwd)
    if ref.startswith("mlflow:"):
        from envlock.mlflow_handoff import record_of_run

        ref = record_of_run(ref.removeprefix("mlflow:"))
    rec = find(ref, root, lambda message: say(f"warning: {message}"))
    lock = lock_at_commit(root, rec)
    if worktree is not None:
        add_worktree(root, worktree, rec.commit, say)
    platform = rec.platform
    wanted = rec.image_id

    existing = store.find_env(lock.env_id, platform)
    if existing is not None and existing.image_id == wanted:
        return Rebuilt(rec, load_image(store, existing.manifest), "store", worktree)
    if rec.registry:
        from envlock.errors import ServiceUnavailable
        from envlock.image import registry

        try:
            digest = registry.pull(store, rec.registry, say)
            image = load_image(store, digest)
            if image.image_id == wanted:
                return Rebuilt(rec, image, "registry", worktree)
        except (ServiceUnavailable, CheckFailed) as exc:
            say(f"could not pull {rec.registry} ({exc.message}); rebuilding from the lock")
    lock_dir = (worktree or root) / Path(rec.lock).parent
    name = Path(rec.lock).stem
    say(f"Rebuilding the image of {rec.name} from {rec.lock} at {rec.commit[:12]}")
    remote = None
    if cache:
        from envlock.image.buildcache import RemoteCache

        remote = RemoteCache(cache, store, say)
    result: BuildResult = build_lock(
        lock, lock_dir, name, store=store, platform=platform, say=say, cache=remote
    )
    for warning in remote.warnings if remote is not None else ():
        say(f"warning: {warning}")
    if result.image_id != wanted:
        raise CheckFailed(
            f"rebuilt image {result.image_id[:19]}… is not the recorded {wanted[:19]}…: "
            + explain_mismatch(rec, result.image),
            "pull the recorded image from its registry if it was pushed (envlock record --push), "
            "or rebuild on a store that still has the base",
        )
    return Rebuilt(rec, result.image, "built", worktree)


def add_worktree(root: Path, path: Path, commit: str, say: Say) -> None:
    if path.exists() and any(path.iterdir()):
        head = None
        with contextlib.suppress(UsageError):
            head = git(["rev-parse", "--verify", "HEAD^{commit}"], path).decode().strip()
        if head == commit:
            return
        raise UsageError(
            f"{path} exists and is not a checkout of {commit[:12]}", "choose a new --worktree path"
        )
    git(["worktree", "add", "--detach", "--end-of-options", str(path.absolute()), commit], root)
    say(f"Checked out {commit[:12]} in {path}")


def retrain_command(rec: Record, image_id: str, worktree: Path | None, extra: list[str]) -> str:
    """The ``docker run`` line that retrains ``rec`` in ``image_id`` (shell-quoted)."""
    command = extra or split_command(rec.command)
    where = str((worktree or Path()).absolute())
    workdir = "/workspace"
    return (
        f"docker run --rm -v {shlex.quote(where)}:{workdir} -w {workdir} "
        f"{image_id} {shlex.join(command) if command else ''}"
    ).rstrip()


def split_command(command: str) -> list[str]:
    """A recorded command as argv (``shlex``); a command that does not split is bad input."""
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise UsageError(
            f"the recorded command {command[:80]!r} cannot be split into words: {exc}",
            "give the command after --",
        ) from None


_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)$")
_LABEL_KEY = re.compile(r"^(?:[a-z0-9.-]{1,253}/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def placement(gpu_products: list[str], node_selector: list[str]) -> tuple[list[str], dict[str, str]]:
    """``--gpu-product`` values and ``--node-selector KEY=VALUE`` pairs, checked against the
    Kubernetes label syntax ("Labels and Selectors", kubernetes.io/docs/concepts/overview/
    working-with-objects/labels/#syntax-and-character-set); ``UsageError`` names a bad one.
    GPU products are matched on GPU Feature Discovery's ``nvidia.com/gpu.product`` node label."""
    for product in gpu_products:
        if not _LABEL_VALUE.match(product):
            raise UsageError(
                f"--gpu-product {product!r} is not a Kubernetes label value",
                "use the node's nvidia.com/gpu.product label, e.g. NVIDIA-H100-80GB-HBM3",
            )
    selector: dict[str, str] = {}
    for pair in node_selector:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_KEY.match(key) or (value and not _LABEL_VALUE.match(value)):
            raise UsageError(
                f"--node-selector {pair!r} is not KEY=VALUE with a Kubernetes label key and value"
            )
        selector[key] = value
    return sorted(set(gpu_products)), dict(sorted(selector.items()))


def _label(value: str) -> str:
    """A Kubernetes label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.") or "model"


def job_manifest(
    rec: Record,
    image: Image,
    reference: str,
    command: list[str],
    gpu_products: list[str] | None = None,
    node_selector: list[str] | None = None,
) -> dict[str, Any]:
    """A Kubernetes ``batch/v1`` Job (as data) running ``command`` (default: the record's)
    in the image pinned by ``reference`` (``REG/REPO@sha256:...``).  ``gpu_products`` become a
    required node affinity on ``nvidia.com/gpu.product`` (any of them), ``node_selector``
    (``KEY=VALUE``) the pod's ``nodeSelector`` (both checked by :func:`placement`).

    Shape: Kubernetes API reference, Job v1 batch (``spec.template.spec.containers[]``,
    ``restartPolicy: Never``, ``nvidia.com/gpu`` limits from the NVIDIA device plugin).

    Raises:
        UsageError: the reference is not pinned by digest, or the command does not split.
    """
    from envlock.digest import is_digest

    if "@" not in reference or not is_digest(reference.rpartition("@")[2]):
        raise UsageError("a Kubernetes Job needs the image by registry digest", "record with --push REG/REPO")
    labels = image.config.get("config", {}).get("Labels", {})
    cuda = labels.get("dev.envlock.cuda", "cpu") != "cpu"
    job_name = re.sub(r"[^a-z0-9-]", "-", f"retrain-{rec.name}-{rec.id}".lower())[:63].strip("-")
    meta_labels = {"envlock.dev/model": _label(rec.name), "envlock.dev/record": rec.id}
    container: dict[str, Any] = {
        "name": "train",
        "image": reference,
        "workingDir": image.config.get("config", {}).get("WorkingDir") or "/workspace",
        "command": command or split_command(rec.command) or ["python"],
        "env": [
            {"name": "ENVLOCK_RECORD", "value": rec.id},
            {"name": "ENVLOCK_COMMIT", "value": rec.commit},
        ],
    }
    if cuda:
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}  # a Quantity is a string
    products, selector = placement(gpu_products or [], node_selector or [])
    pod: dict[str, Any] = {"restartPolicy": "Never"}
    if selector:
        pod["nodeSelector"] = selector
    if products:
        term = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": products}]}
        pod["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    pod["containers"] = [container]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "labels": {"app.kubernetes.io/managed-by": "envlock", **meta_labels},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": dict(meta_labels)},
                "spec": pod,
            },
        },
    }


def k8s_job(
    rec: Record,
    image: Image,
    reference: str,
    command: list[str],
    gpu_products: list[str] | None = None,
    node_selector: list[str] | None = None,
) -> str:
    """The Job of :func:`job_manifest` as one YAML document, serialised by PyYAML (never
    a text template, so no field can add keys or documents), after a comment header."""
    import yaml  # type: ignore[import-untyped]

    name = re.sub(r"[^A-Za-z0-9._-]", "?", rec.name)  # a comment line stays one line
    header = (
        f"# Generated by `envlock rebuild {name} --k8s-job`: retrain {name} (record {rec.id})\n"
        f"# in the exact image it was trained in, pinned by digest. Code: commit {rec.commit}.\n"
    )
    body: str = yaml.safe_dump(
        job_manifest(rec, image, reference, command, gpu_products, node_selector),
        sort_keys=False,
        default_flow_style=False,
        explicit_start=False,
        allow_unicode=False,
    )
    return header + body
