"""Spec loading: values, defaults, and errors that name the file, the line and the choices."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from envlock import spec as specmod
from envlock.errors import SpecError
from envlock.spec import Framework, discover, load, parse

FULL = textwrap.dedent(
    """\
    name = "vision"
    python = "3.11"
    platforms = ["linux-64", "osx-arm64"]

    [framework]
    name = "pytorch"
    version = "2.5"
    cuda = "12.4"

    [pip]
    packages = ["numpy<2", "pandas>=2", "scikit-learn"]
    index-url = "https://pypi.org/simple"
    indexes = ["https://${USER}:${TOKEN}@private.example.org/simple"]
    find-links = ["../wheels"]
    exclude-newer = "2026-11-01"

    [conda]
    channels = ["conda-forge"]
    packages = ["cudnn=9"]

    [image]
    base = "debian:bookworm"
    system = ["git", "curl"]
    env = { PYTHONUNBUFFERED = "1", A = "b" }
    workdir = "/srv/app"
    """
)


def write(tmp_path: Path, text: str, name: str = "vision.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def spec_error(tmp_path: Path, text: str, name: str = "vision.toml") -> tuple[Path, SpecError]:
    path = write(tmp_path, text, name)
    with pytest.raises(SpecError) as info:
        load(path)
    return path, info.value


def line_of(err: SpecError, path: Path) -> int:
    m = re.match(rf"^{re.escape(str(path))}:(\d+):", err.message)
    assert m, f"message does not start with '{path}:LINE:': {err.message}"
    return int(m.group(1))


# --- values and defaults ---------------------------------------------------------------


def test_full_spec_parses_every_table(tmp_path: Path) -> None:
    spec = load(write(tmp_path, FULL))

    assert spec.name == "vision"
    assert spec.python == "3.11"
    assert spec.platforms == ("linux-64", "osx-arm64")
    assert spec.framework == Framework("pytorch", "2.5", "12.4")
    assert spec.pip.packages == ("numpy<2", "pandas>=2", "scikit-learn")
    assert spec.pip.index_url == "https://pypi.org/simple"
    assert spec.pip.indexes == ("https://${USER}:${TOKEN}@private.example.org/simple",)
    assert spec.pip.find_links == ("../wheels",)
    assert spec.pip.no_index is False
    assert spec.pip.exclude_newer == "2026-11-01T00:00:00Z"
    assert spec.conda is not None
    assert spec.conda.channels == ("conda-forge",)
    assert spec.conda.packages == ("cudnn=9",)
    assert spec.image.base == "debian:bookworm"
    assert spec.image.system == ("git", "curl")
    assert dict(spec.image.env) == {"PYTHONUNBUFFERED": "1", "A": "b"}
    assert spec.image.workdir == "/srv/app"


def test_minimal_spec_gets_defaults(tmp_path: Path) -> None:
    spec = load(write(tmp_path, 'python = "3.12"\n', name="train-gpu.toml"))

    assert spec.name == "train-gpu"
    assert spec.platforms == ("linux-64",)
    assert spec.image.workdir == "/workspace"
    assert spec.image.base is None
    assert spec.framework is None
    assert spec.conda is None
    assert spec.pip.packages == ()
    assert spec.pip.exclude_newer is None


def test_framework_cuda_defaults_to_cpu(tmp_path: Path) -> None:
    spec = load(write(tmp_path, 'python = "3.11"\n[framework]\nname = "jax"\nversion = "0.8"\n'))
    assert spec.framework == Framework("jax", "0.8", "cpu")


@pytest.mark.parametrize(
    "value",
    [
        '"2026-11-01"',
        "2026-11-01",
        "2026-11-01T02:00:00+02:00",
        '"2026-10-31T19:00:00-05:00"',
        '"2026-11-01T00:00:00Z"',
    ],
    ids=["string-date", "toml-date", "toml-datetime-offset", "string-offset", "string-utc"],
)
def test_exclude_newer_normalises_to_utc(tmp_path: Path, value: str) -> None:
    spec = load(write(tmp_path, f'python = "3.11"\n[pip]\nexclude-newer = {value}\n'))
    assert spec.pip.exclude_newer == "2026-11-01T00:00:00Z"


def test_exclude_newer_rejects_garbage(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n[pip]\nexclude-newer = "last tuesday"\n')
    assert line_of(err, path) == 3
    assert "invalid date" in err.message


# --- errors name the file and the line -------------------------------------------------


def test_unknown_top_level_key_suggests_close_match(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'name = "x"\npyhton = "3.11"\n')

    assert line_of(err, path) == 2
    assert "unknown key 'pyhton'" in err.message
    assert err.hint is not None
    assert "did you mean 'python'?" in err.hint
    assert "valid keys:" in err.hint


def test_unknown_key_in_pip_names_its_line(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path,
        """\
        python = "3.11"

        [pip]
        packages = ["numpy"]
        extra-index = ["https://example.org/simple"]
        """,
    )
    assert line_of(err, path) == 5
    assert "unknown key 'extra-index' in [pip]" in err.message


def test_python_as_a_number_is_a_type_error(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'name = "x"\n\npython = 3.11\n')

    assert line_of(err, path) == 3
    assert "'python' must be a string, not a number" in err.message


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n[pip]\npackages = ["numpy"\n\nx = 1\n')

    assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: invalid TOML: ", err.message)
    assert "(at line" not in err.message


def test_malformed_toml_reports_the_right_line(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\nname "x"\n')
    assert err.message.startswith(f"{path}:2:")
    assert "invalid TOML" in err.message


def test_unknown_platform_lists_valid_ones(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\nplatforms = ["linux-64", "linux-arm"]\n')

    assert line_of(err, path) == 2
    assert "unknown platform 'linux-arm'" in err.message
    assert err.hint is not None
    for valid in ("linux-64", "linux-aarch64", "osx-arm64"):
        assert valid in err.hint


def test_unknown_framework_lists_valid_ones(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n\n[framework]\nversion = "2.5"\nname = "torch"\n')
    assert line_of(err, path) == 5
    assert "unknown framework 'torch'" in err.message
    assert err.hint == "valid frameworks: pytorch, tensorflow, jax"


def test_invalid_requirement_names_packages_line(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path,
        """\
        python = "3.11"
        [pip]
        exclude-newer = "2026-11-01"
        packages = [
            "numpy",
            "pandas>=>2",
        ]
        """,
    )
    assert line_of(err, path) == 4
    assert "invalid requirement 'pandas>=>2'" in err.message


def test_strict_false_skips_requirement_syntax(tmp_path: Path) -> None:
    text = (
        'python = "3.11"\n[framework]\nname = "pytorch"\nversion = "two"\n[pip]\npackages = ["pandas>=>2"]\n'
    )
    path = write(tmp_path, text)

    with pytest.raises(SpecError):
        load(path)
    spec = load(path, strict=False)
    assert spec.pip.packages == ("pandas>=>2",)
    assert spec.framework is not None and spec.framework.version == "two"


def test_credentials_in_index_url_are_rejected(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path,
        'python = "3.11"\n[pip]\nindexes = ["https://user:pw@host/simple"]\n',
    )
    assert line_of(err, path) == 3
    assert "holds credentials" in err.message
    assert "${ENV_VAR}" in err.message


def test_credentials_in_index_url_option_are_rejected(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n[pip]\nindex-url = "https://token@host/simple"\n')
    assert line_of(err, path) == 3
    assert "holds credentials" in err.message


def test_credentials_in_find_links_url_are_rejected(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path, 'python = "3.11"\n[pip]\nfind-links = ["https://user:pw@host/wheels/"]\n'
    )
    assert line_of(err, path) == 3
    assert "holds credentials" in err.message


def test_malformed_url_with_credentials_in_its_path_is_rejected(tmp_path: Path) -> None:
    # urllib reads http:///user:secret@host as an empty host and a path; uv would log in
    path, err = spec_error(
        tmp_path, 'python = "3.11"\n[pip]\nindex-url = "http:///user:s3cret@host/simple"\n'
    )
    assert line_of(err, path) == 3
    assert "has no host" in err.message
    assert "s3cret" not in err.message and "user" not in err.message


def test_credential_errors_do_not_repeat_the_secret(tmp_path: Path) -> None:
    _, err = spec_error(tmp_path, 'python = "3.11"\n[pip]\nindexes = ["https://ci:s3cret@host/simple"]\n')
    assert "s3cret" not in err.message
    assert "https://***@host/simple" in err.message


@pytest.mark.parametrize(
    "channel",
    ["http://user:s3cret@host/chan", "https://s3cret@host/chan", "http:///user:s3cret@host/chan"],
)
def test_conda_channel_urls_are_checked_like_indexes(tmp_path: Path, channel: str) -> None:
    path, err = spec_error(
        tmp_path,
        f'python = "3.11"\n[conda]\nchannels = ["conda-forge", "{channel}"]\npackages = ["x"]\n',
    )
    assert line_of(err, path) == 3
    assert "'conda.channels'" in err.message
    assert "s3cret" not in err.message


def test_conda_channel_names_without_a_scheme_cannot_hide_credentials(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path, 'python = "3.11"\n[conda]\nchannels = ["user:s3cret@host/chan"]\npackages = ["x"]\n'
    )
    assert line_of(err, path) == 3
    assert "neither a channel name" in err.message
    assert "s3cret" not in err.message


def test_conda_channels_with_placeholders_and_labels_are_accepted(tmp_path: Path) -> None:
    channels = ["conda-forge/label/dev", "https://${CH_USER}:${CH_TOKEN}@host/chan", "file:///srv/chan"]
    text = f'python = "3.11"\n[conda]\nchannels = {channels!r}\npackages = ["x"]\n'.replace("'", '"')
    spec = load(write(tmp_path, text))
    assert spec.conda is not None and spec.conda.channels == tuple(channels)


def test_conda_channel_directories_relative_to_the_spec_are_accepted(tmp_path: Path) -> None:
    channels = ["./channels/example", "../shared/channel/"]
    text = f'python = "3.11"\n[conda]\nchannels = {channels!r}\npackages = ["x"]\n'.replace("'", '"')
    spec = load(write(tmp_path, text))
    assert spec.conda is not None and spec.conda.channels == tuple(channels)


@pytest.mark.parametrize(
    "channel", ["./my channel", "./chan?x=1", "./chan#frag", "./a%2Fb", "./${TOKEN}/chan"]
)
def test_conda_channel_directories_with_url_syntax_are_refused(tmp_path: Path, channel: str) -> None:
    path, err = spec_error(
        tmp_path, f'python = "3.11"\n[conda]\nchannels = ["{channel}"]\npackages = ["x"]\n'
    )
    assert line_of(err, path) == 3
    assert "channel path" in err.message


def test_credentials_as_env_placeholders_are_accepted(tmp_path: Path) -> None:
    url = "https://${USER}:${TOKEN}@host/simple"
    spec = load(write(tmp_path, f'python = "3.11"\n[pip]\nindexes = ["{url}"]\n'))
    assert spec.pip.indexes == (url,)


def test_system_packages_need_a_debian_base(tmp_path: Path) -> None:
    path, err = spec_error(
        tmp_path,
        """\
        python = "3.11"
        [image]
        base = "python:3.11-slim@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        system = ["git"]
        """,
    )
    assert line_of(err, path) == 4
    assert "need a debian:SUITE base" in err.message
    assert err.hint is not None and "debian:bookworm" in err.hint


def test_relative_workdir_is_rejected(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n[image]\nworkdir = "workspace"\n')
    assert line_of(err, path) == 3
    assert "must be an absolute path" in err.message


def test_bytecode_is_off_by_default_and_out_of_the_canonical_form(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('python = "3.11"\n')
    assert load(path).image.bytecode is False
    assert "bytecode" not in load(path).canonical()["image"]


def test_bytecode_true_is_part_of_the_canonical_form(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('python = "3.11"\n[image]\nbytecode = true\n')
    assert load(path).image.bytecode is True
    assert load(path).canonical()["image"]["bytecode"] is True


def test_a_bytecode_that_is_not_a_boolean_is_rejected(tmp_path: Path) -> None:
    path, err = spec_error(tmp_path, 'python = "3.11"\n[image]\nbytecode = "yes"\n')
    assert line_of(err, path) == 3
    assert "'image.bytecode' must be true or false" in err.message


def test_spec_filename_with_a_dot_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    path, err = spec_error(tmp_path, 'python = "3.11"\n', name="specs/a.b.toml")
    assert err.message.startswith(f"{path}: ")
    assert "may not contain dots" in err.message


def test_missing_spec_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load(tmp_path / "nope.toml")
    assert "no such spec file" in info.value.message
    assert info.value.hint is not None and "envlock init" in info.value.hint


# --- spec hash -------------------------------------------------------------------------


def test_spec_hash_ignores_comments_whitespace_and_key_order() -> None:
    a = parse(
        'name = "vision"\npython = "3.11"\n[pip]\npackages = ["numpy"]\nexclude-newer = "2026-11-01"\n',
        Path("vision.toml"),
    )
    b = parse(
        textwrap.dedent(
            """\
            # my environment
            python   =   "3.11"
            name = "vision"   # same as the stem


            [pip]
            exclude-newer = 2026-11-01      # a TOML date this time
            packages = [
                "numpy",   # the only one
            ]
            """
        ),
        Path("vision.toml"),
    )
    assert a.spec_hash == b.spec_hash
    assert a.spec_hash.startswith("sha256:")


def test_spec_hash_changes_when_a_package_changes() -> None:
    a = parse('python = "3.11"\n[pip]\npackages = ["numpy"]\n', Path("vision.toml"))
    b = parse('python = "3.11"\n[pip]\npackages = ["numpy<2"]\n', Path("vision.toml"))
    assert a.spec_hash != b.spec_hash


def test_spec_hash_depends_on_the_name_from_the_file_stem() -> None:
    text = 'python = "3.11"\n'
    assert parse(text, Path("a.toml")).spec_hash != parse(text, Path("b.toml")).spec_hash


# --- discover ------------------------------------------------------


def test_discover_skips_exports_and_other_files(tmp_path: Path) -> None:
    for name in ("vision.toml", "nlp.toml", "pylock.vision.toml", "vision.lock", "notes.txt"):
        (tmp_path / name).write_text("")
    assert discover(tmp_path) == [tmp_path / "nlp.toml", tmp_path / "vision.toml"]


def test_frameworks_are_the_documented_three() -> None:
    assert specmod.FRAMEWORKS == ("pytorch", "tensorflow", "jax")


def test_a_byte_order_mark_is_accepted_and_changes_nothing(tmp_path: Path) -> None:
    plain = load(write(tmp_path, FULL))
    path = tmp_path / "bom" / "vision.toml"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + FULL.encode())
    with_bom = load(path)
    assert with_bom.spec_hash == plain.spec_hash
    assert with_bom.image.env == plain.image.env
    broken = tmp_path / "bad" / "vision.toml"
    broken.parent.mkdir()
    broken.write_bytes(b"\xef\xbb\xbfpython = \n")
    with pytest.raises(SpecError, match=r"vision.toml:1:\d+: invalid TOML"):  # lines still count from 1
        load(broken)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ('{ "A=B" = "1" }', "variable 'A=B' contains '=' (the image would read it as 'A')"),
        ('{ "=X" = "1" }', "variable '=X' contains '='"),
        ('{ "" = "1" }', "has an empty variable name"),
        ('{ A = "x\\u0000y" }', "variable 'A' contains a NUL character"),
    ],
)
def test_image_env_names_the_image_cannot_hold_are_refused(tmp_path: Path, env: str, words: str) -> None:
    path, err = spec_error(tmp_path, f'python = "3.11"\n[image]\nenv = {env}\n')
    assert err.message.startswith(f"{path}:3: 'image.env' {words}")
    assert err.exit_code == 2 and "letters, digits and '_'" in (err.hint or "")


def test_a_lock_given_as_a_spec_says_so(tmp_path: Path) -> None:
    lock = tmp_path / "vision.lock"
    lock.write_text('version = 1\nenv-id = "sha256:' + "0" * 64 + '"\nspec-hash = "x"\n')
    for given in (lock, tmp_path / "renamed.toml"):
        if given != lock:
            given.write_text(lock.read_text())
        with pytest.raises(SpecError) as info:
            load(given)
        assert info.value.message.startswith(f"{given} is a lock, not a spec")
        assert info.value.hint == f"give the spec instead: {given.with_suffix('.toml')}"
