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

from envlock import lock as lockmod
from envlock.errors import CheckFailed, UsageError
from envlock.gitcli import cat_files, git
from envlock.image.build import BuildResult, build_lock, load_image
from envlock.image.model import Image
from envlock.record import commit_exists, find, repo_root
from envlock.store import Store, holding_store

Say = Callable[[str], None]


@dataclass(frozen=True)
class Rebuilt:
    record: dict[str, Any]
    image: Image
    how: str  # "store" | "registry" | "built"
    worktree: Path | None

    @property
    def image_id(self) -> str:
        return self.image.image_id


def lock_at_commit(root: Path, rec: dict[str, Any]) -> lockmod.Lock:
    commit, path = rec["commit"], rec["lock"]
    if not commit_exists(root, commit):
        raise CheckFailed(
            f"commit {commit[:12]} of record {rec.get('id')} ({rec['name']}) is not in this repository",
            "the clone may be shallow or history rewritten: git fetch --unshallow, then envlock sync",
        )
    (text,) = cat_files([f"{commit}:{path}"], root)
    if text is None:
        raise CheckFailed(
            f"{path} does not exist at commit {commit[:12]}",
            "the record points at a lock that was never committed",
        )
    lock = lockmod.parse(text.decode("utf-8"), f"{path}@{commit[:12]}")
    problems = lockmod.problems(lock)
    if problems:
        raise CheckFailed(f"{path} at {commit[:12]} is not intact: {problems[0]}")
    if lock.env_id != rec["env_id"]:
        raise CheckFailed(
            f"{path} at {commit[:12]} has env ID {lock.env_id[:19]}…, the record says {rec['env_id'][:19]}…",
            "the note was edited or belongs to another lock",
        )
    return lock


def explain_mismatch(rec: dict[str, Any], image: Image) -> str:
    """Which layer differs between the recorded image and the rebuilt one, and why.

    Base layers are compared as a group (a base that changed is one cause, however
    many layers it has), then envlock's own layers one by one.
    """
    recorded = [(la["diff_id"], la.get("created_by", "")) for la in rec.get("layers") or []]
    rebuilt = [(la.diff_id, la.created_by) for la in image.layers]
    base = rec.get("base") or {}
    labels = image.config.get("config", {}).get("Labels", {})
    was_base = [d for d, c in recorded if c == "base"]
    now_base = [d for d, c in rebuilt if c == "base"]
    if was_base != now_base:
        return (
            f"the base image {base.get('reference', '')} differs: recorded "
            f"{str(base.get('digest', ''))[:19]}… ({len(was_base)} layers), now "
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
) -> Rebuilt:
    say = say or (lambda _m: None)
    root = repo_root(cwd)
    rec = find(ref, root)
    lock = lock_at_commit(root, rec)
    if worktree is not None:
        add_worktree(root, worktree, rec["commit"], say)
    platform = rec.get("platform") or "linux-64"
    wanted = rec["image_id"]

    existing = store.find_env(lock.env_id, platform)
    if existing is not None and existing.image_id == wanted:
        return Rebuilt(rec, load_image(store, existing.manifest), "store", worktree)
    if rec.get("registry"):
        from envlock.errors import ServiceUnavailable
        from envlock.image import registry

        try:
            digest = registry.pull(store, rec["registry"], say)
            image = load_image(store, digest)
            if image.image_id == wanted:
                return Rebuilt(rec, image, "registry", worktree)
        except (ServiceUnavailable, CheckFailed) as exc:
            say(f"could not pull {rec['registry']} ({exc.message}); rebuilding from the lock")
    lock_dir = (worktree or root) / Path(rec["lock"]).parent
    name = Path(rec["lock"]).stem
    say(f"Rebuilding the image of {rec['name']} from {rec['lock']} at {rec['commit'][:12]}")
    result: BuildResult = build_lock(lock, lock_dir, name, store=store, platform=platform, say=say)
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
            head = git(["rev-parse", "HEAD"], path).decode().strip()
        if head == commit:
            return
        raise UsageError(
            f"{path} exists and is not a checkout of {commit[:12]}", "choose a new --worktree path"
        )
    git(["worktree", "add", "--detach", str(path.absolute()), commit], root)
    say(f"Checked out {commit[:12]} in {path}")


def retrain_command(rec: dict[str, Any], image_id: str, worktree: Path | None, extra: list[str]) -> str:
    command = extra or shlex.split(rec.get("command") or "")
    where = str((worktree or Path()).absolute())
    workdir = "/workspace"
    return (
        f"docker run --rm -v {shlex.quote(where)}:{workdir} -w {workdir} "
        f"{image_id} {shlex.join(command) if command else ''}"
    ).rstrip()


def k8s_job(rec: dict[str, Any], image: Image, reference: str, command: list[str]) -> str:
    """A batch/v1 Job running the record's command in its image, pinned by digest."""
    from importlib import resources

    import jinja2

    if "@sha256:" not in reference:
        raise UsageError("a Kubernetes Job needs the image by registry digest", "record with --push REG/REPO")
    labels = image.config.get("config", {}).get("Labels", {})
    cuda = labels.get("dev.envlock.cuda", "cpu") != "cpu"
    label_name = re.sub(r"[^A-Za-z0-9_.-]", "-", rec["name"])[:63].strip("-_.") or "model"
    job_name = re.sub(r"[^a-z0-9-]", "-", f"retrain-{rec['name']}-{rec['id']}".lower())[:63].strip("-")
    source = resources.files("envlock").joinpath("templates", "k8s-job.yaml.j2").read_text("utf-8")
    template = jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(source)
    return template.render(
        name=rec["name"],
        record_id=rec["id"],
        commit=rec["commit"],
        job_name=job_name,
        label_name=label_name,
        image=reference,
        workdir=image.config.get("config", {}).get("WorkingDir") or "/workspace",
        command=command or shlex.split(rec.get("command") or "python"),
        gpus=1 if cuda else 0,
    )
