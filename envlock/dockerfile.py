"""``envlock build --engine docker``: a Dockerfile rendered from the lock, built by the engine.

For users who need arbitrary build steps on top.  pip runs inside ``docker
build`` (offline, ``--require-hashes`` against the verified wheels), so the
packages are the locked ones, but the image is not bit-reproducible: the
resulting ID is recorded in the store, never promised.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

Say = Callable[[str], None]


def render(
    *,
    base: str,
    python: str,
    base_path: str,
    env: list[tuple[str, str]],
    workdir: str,
    env_id: str,
    lock_name: str,
) -> str:
    import jinja2

    source = resources.files("envlock").joinpath("templates", "Dockerfile.j2").read_text("utf-8")
    template = jinja2.Environment(autoescape=False, keep_trailing_newline=True).from_string(source)
    return template.render(
        base=base,
        python=python,
        base_path=base_path,
        env=env,
        workdir=workdir,
        env_id=env_id,
        lock_name=lock_name,
    )


def build_with_docker(spec_path: Path, *, store: object, say: Say, platform: str | None = None) -> str:
    from envlock import engine
    from envlock.digest import parse_digest
    from envlock.export import requirements
    from envlock.fetch import fetch_all
    from envlock.image import base as basemod
    from envlock.image.build import _base_path, _to_fetch, _wheels, choose_platform
    from envlock.locking import current_lock, lock_path
    from envlock.spec import load
    from envlock.store import Store

    assert isinstance(store, Store)
    spec = load(spec_path)
    lock = current_lock(spec)
    plat = choose_platform(lock, platform)
    reference = plat.base or basemod.default_base(plat.python)
    base = basemod.resolve(store, reference, plat.python, plat.system, say)
    from envlock.image.build import load_image

    base_image = load_image(store, base.manifest)
    base_tag = f"envlock-base:{base.digest.split(':')[1][:16]}"
    engine.load(store, base_image, [base_tag], say)
    pip = [p for p in plat.packages if p.manager == "pip"]
    from envlock.credentials import sources_from_options

    # packages built from source become their (checked) wheels, as in envlock's own build
    paths = fetch_all(
        store,
        _to_fetch(store, pip, plat.python),
        spec.path.parent,
        sources=sources_from_options(plat.pip_options),
    )
    wheels_in = _wheels(store, pip, paths, spec.path.parent, plat.python, say)
    say("warning: --engine docker runs pip inside docker build; the image is NOT bit-reproducible")
    with tempfile.TemporaryDirectory(prefix="envlock-docker-", dir=store.tmp) as tmp:
        ctx = Path(tmp)
        wheels = ctx / "wheels"
        wheels.mkdir()
        for p, path in wheels_in:
            target = wheels / p.filename
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
        header = requirements(lock, plat.name, lock_path(spec.path).name).splitlines()[:2]
        lines = [f"{p.name}=={p.version} \\\n    --hash=sha256:{p.sha256}" for p, _ in sorted(wheels_in)]
        (ctx / "requirements.txt").write_text("\n".join([*header, *lines]) + "\n")
        (ctx / "Dockerfile").write_text(
            render(
                base=base_tag,
                python=base.interpreter.path,
                base_path=_base_path(base.config),
                env=list(plat.env),
                workdir=plat.workdir,
                env_id=lock.env_id,
                lock_name=lock_path(spec.path).name,
            )
        )
        tag = f"envlock/{spec.name}:dockerfile-{lock.env_id.split(':')[1][:12]}"
        image_id = engine.build_dockerfile(ctx, tag, say)
    record = store.root / "dockerfile-builds" / f"{parse_digest(lock.env_id, source='env-id')[7:]}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(record.read_text()) if record.is_file() else []
    history.append({"image_id": image_id, "tag": tag, "base": base.digest})
    record.write_text(json.dumps(history, indent=2) + "\n")
    say(f"docker build made {image_id[:19]} (tagged {tag}); recorded in {record}")
    return image_id
