"""The compat matrix: plans for valid combinations, errors listing the valid choices."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from envlock import compat
from envlock.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, CheckFailed, CompatError, SpecError
from envlock.spec import FRAMEWORKS, Framework


def torch(version: str, cuda: str = "cpu") -> Framework:
    return Framework("pytorch", version, cuda)


# --- plan: valid combinations ----------------------------------------------------------


def test_torch_with_pypi_default_cuda_needs_no_extra_index() -> None:
    plan = compat.plan(torch("2.5", "12.4"), "linux-64", "3.11")

    assert plan.requirements == ("torch==2.5.*",)
    assert plan.priority_indexes == ()
    assert plan.cuda == "12.4"
    assert plan.runtime == "12.4"
    assert [r.version for r in plan.releases] == ["2.5"]


def test_torch_with_other_cuda_uses_the_variant_index() -> None:
    plan = compat.plan(torch("2.5.1", "12.1"), "linux-64", "3.11")

    assert plan.requirements == ("torch==2.5.1",)
    assert plan.priority_indexes == ("https://download.pytorch.org/whl/cu121",)


def test_torch_cpu_on_linux_uses_the_cpu_index() -> None:
    plan = compat.plan(torch("2.5"), "linux-64", "3.11")

    assert plan.priority_indexes == ("https://download.pytorch.org/whl/cpu",)
    assert plan.runtime is None


def test_torch_cpu_on_macos_comes_from_pypi() -> None:
    plan = compat.plan(torch("2.5"), "osx-arm64", "3.11")
    assert plan.priority_indexes == ()


def test_torch_without_that_cuda_variant_lists_the_valid_ones() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch("2.5.1", "12.8"), "linux-64", "3.11")

    err = info.value
    assert isinstance(err, SpecError)
    assert err.exit_code == EXIT_BAD_INPUT == 2
    assert "no CUDA 12.8 build" in err.message
    assert err.hint is not None and err.hint.endswith("11.8, 12.1, 12.4, cpu")


def test_python_outside_the_release_range_lists_supported_pythons() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch("2.0", "11.8"), "linux-64", "3.13")

    assert "does not support Python 3.13" in info.value.message
    assert info.value.hint is not None
    assert info.value.hint.endswith("3.8, 3.9, 3.10, 3.11")


def test_unknown_release_lists_known_releases() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch("9.9", "12.4"), "linux-64", "3.11")

    assert "no release matching '9.9'" in info.value.message
    hint = info.value.hint or ""
    assert "2.0, 2.1, 2.2" in hint
    assert "envlock matrix pytorch" in hint


def test_cuda_on_macos_is_an_error() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch("2.5", "12.4"), "osx-arm64", "3.11")

    assert "linux-64 only" in info.value.message
    assert info.value.hint is not None and 'cuda = "cpu"' in info.value.hint


def test_version_specifier_selects_several_releases() -> None:
    plan = compat.plan(torch(">=2.4,<2.6", "12.4"), "linux-64", "3.11")

    assert [r.version for r in plan.releases] == ["2.4", "2.5"]
    (requirement,) = plan.requirements
    assert requirement.startswith("torch")
    assert SpecifierSet(requirement.removeprefix("torch")) == SpecifierSet(">=2.4,<2.6")
    # 2.4 defaults to 12.1 on PyPI and 2.5 to 12.4: only the variant index is certain
    assert plan.priority_indexes == ("https://download.pytorch.org/whl/cu124",)


def test_tensorflow_cuda_uses_the_and_cuda_extra() -> None:
    plan = compat.plan(Framework("tensorflow", "2.20", "12.5"), "linux-64", "3.11")

    assert plan.requirements == ("tensorflow[and-cuda]==2.20.*",)
    assert plan.priority_indexes == ()


def test_tensorflow_cpu_has_no_extra() -> None:
    plan = compat.plan(Framework("tensorflow", "2.20", "cpu"), "linux-64", "3.11")
    assert plan.requirements == ("tensorflow==2.20.*",)


def test_jax_cuda_uses_the_major_version_extra() -> None:
    plan = compat.plan(Framework("jax", "0.8", "12.8"), "linux-64", "3.11")

    assert plan.requirements == ("jax[cuda12]==0.8.*",)
    assert plan.runtime == "12."


def test_unknown_framework_is_a_compat_error() -> None:
    with pytest.raises(CompatError) as info:
        compat.framework("mxnet")
    assert info.value.hint == "valid frameworks: pytorch, tensorflow, jax"


# --- matrix data sanity ----------------------------------------------------------------


def test_every_pytorch_release_has_python_and_a_valid_pypi_default() -> None:
    releases = compat.framework("pytorch").releases
    versions = [r.version for r in releases]
    assert versions[0] == "2.0"
    newest_minor = int(versions[-1].split(".")[1])
    assert versions == [f"2.{m}" for m in range(newest_minor + 1)]
    for r in releases:
        assert r.python, r.version
        assert r.pypi_default is not None, r.version
        assert r.pypi_default in (*r.cuda, "cpu"), r.version


def test_every_cuda_version_in_the_matrix_has_a_driver_row() -> None:
    known = {c.version for c in compat.cuda_versions()}
    majors = {v.split(".")[0] for v in known}
    for name in FRAMEWORKS:
        for r in compat.framework(name).releases:
            for cuda in r.cuda:
                # jax rows name the CUDA major only ("12"), the others major.minor
                assert cuda in (majors if name == "jax" else known), (name, r.version, cuda)


def test_every_row_names_its_source() -> None:
    for name in FRAMEWORKS:
        info = compat.framework(name)
        assert info.source.strip(), name
        for r in info.releases:
            assert r.source.strip(), (name, r.version)
    for c in compat.cuda_versions():
        assert c.source.strip(), c.version


def test_min_driver_is_known_for_listed_cuda() -> None:
    assert compat.min_driver("12.4") is not None
    assert compat.min_driver("12.7") is None


# --- check_resolved --------------------------------------------------------------------


def test_check_resolved_accepts_the_matching_cuda_runtime() -> None:
    fw = torch("2.5", "12.4")
    plan = compat.plan(fw, "linux-64", "3.11")
    compat.check_resolved(fw, plan, "linux-64", {"torch": "2.5.1", "nvidia-cuda-runtime-cu12": "12.4.127"})


def test_check_resolved_rejects_a_different_cuda_runtime() -> None:
    fw = torch("2.5", "12.4")
    plan = compat.plan(fw, "linux-64", "3.11")

    with pytest.raises(CheckFailed) as info:
        compat.check_resolved(
            fw, plan, "linux-64", {"torch": "2.5.1", "nvidia-cuda-runtime-cu12": "12.1.105"}
        )
    assert info.value.exit_code == EXIT_CHECK_FAILED == 1
    assert "nvidia-cuda-runtime-cu12 12.1.105" in info.value.message


def test_check_resolved_rejects_cuda_wheels_in_a_cpu_linux_env() -> None:
    fw = torch("2.5")
    plan = compat.plan(fw, "linux-64", "3.11")

    with pytest.raises(CheckFailed) as info:
        compat.check_resolved(
            fw, plan, "linux-64", {"torch": "2.5.1+cpu", "nvidia-cuda-runtime-cu12": "12.4.127"}
        )
    assert "CPU environment" in info.value.message


def test_check_resolved_accepts_a_local_cpu_version() -> None:
    fw = torch("2.5")
    plan = compat.plan(fw, "linux-64", "3.11")
    compat.check_resolved(fw, plan, "linux-64", {"torch": "2.5.1+cpu", "numpy": "2.1.0"})


def test_check_resolved_rejects_a_torch_outside_the_usable_releases() -> None:
    fw = torch("2.5", "12.4")
    plan = compat.plan(fw, "linux-64", "3.11")

    with pytest.raises(CheckFailed) as info:
        compat.check_resolved(
            fw, plan, "linux-64", {"torch": "2.6.0", "nvidia-cuda-runtime-cu12": "12.4.127"}
        )
    assert "torch 2.6.0" in info.value.message
    assert info.value.hint is not None and "2.5" in info.value.hint


def test_check_resolved_requires_the_framework_package() -> None:
    fw = torch("2.5", "12.4")
    plan = compat.plan(fw, "linux-64", "3.11")
    with pytest.raises(CheckFailed, match="does not contain torch"):
        compat.check_resolved(fw, plan, "linux-64", {"numpy": "2.1.0"})


# --- rows ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*FRAMEWORKS, "cuda"])
def test_rows_have_one_cell_per_header(name: str) -> None:
    headers, rows = compat.rows(name)

    assert headers and rows
    for row in rows:
        assert len(row) == len(headers)
        assert all(isinstance(cell, str) and cell for cell in row)


def test_pytorch_rows_follow_the_releases() -> None:
    headers, rows = compat.rows("pytorch")
    releases = compat.framework("pytorch").releases

    assert headers[0] == "release"
    assert [row[0] for row in rows] == [r.version for r in releases]
    row_25 = rows[[r.version for r in releases].index("2.5")]
    assert row_25[1] == "2.5.1"
    assert row_25[2] == "3.9-3.13"
    assert row_25[3] == "11.8, 12.1, 12.4, cpu"
    assert row_25[4] == "12.4"
    assert row_25[5] == compat.min_driver("12.4")


def test_cuda_rows_follow_the_cuda_table() -> None:
    headers, rows = compat.rows("cuda")

    assert headers == ["cuda", "min driver", "minor-compat driver"]
    assert [row[0] for row in rows] == [c.version for c in compat.cuda_versions()]


# --- companions (issue 11 item 10) -----------------------------------------------------
# Facts: each companion's own wheel METADATA on PyPI (torchvision 0.24.1 and torchaudio
# 2.9.1: Requires-Dist torch==2.9.1; torchaudio 2.11.0: no torch requirement at all, which
# is how torch 2.9 + torchaudio drifted to 2.11.0 and its libcudart.so.13).


def test_torch_29_with_torchaudio_pins_torchaudio_29() -> None:
    plan = compat.plan(torch("2.9", "12.8"), "linux-64", "3.11", ["torchaudio", "numpy"])

    assert plan.requirements == ("torch==2.9.*", "torchaudio==2.9.*")


def test_companions_from_a_variant_index_share_the_framework_index() -> None:
    plan = compat.plan(torch("2.9", "12.6"), "linux-64", "3.11", ["torchvision>=0.20", "torchaudio"])

    # one priority index for all three: the +cu126 local versions come from the same place
    assert plan.priority_indexes == ("https://download.pytorch.org/whl/cu126",)
    assert plan.requirements == ("torch==2.9.*", "torchvision==0.24.*", "torchaudio==2.9.*")


def test_a_companion_pinned_to_its_own_release_is_kept() -> None:
    plan = compat.plan(torch("2.9", "12.6"), "linux-64", "3.11", ["torchaudio==2.9.1+cu126"])
    assert plan.requirements[1:] == ("torchaudio==2.9.*",)


def test_a_companion_pinned_to_another_release_is_exit_2_naming_the_compatible_one() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch("2.9", "12.8"), "linux-64", "3.11", ["torchaudio==2.11.0"])

    assert info.value.exit_code == EXIT_BAD_INPUT
    assert info.value.message == "torchaudio==2.11.0 in [pip].packages does not fit pytorch 2.9"
    assert "torchaudio 2.9.* (newest 2.9.1)" in (info.value.hint or "")


def test_a_companion_the_release_has_none_of_is_exit_2() -> None:
    # torchvision 0.29.x (newest on PyPI) was built for torch 2.14; nothing for 2.15
    with pytest.raises(CompatError) as info:
        compat.plan(torch("2.15", "13.2"), "linux-64", "3.12", ["torchvision"])

    assert (
        info.value.message == "pytorch 2.15 has no torchvision release that the compat matrix pairs with it"
    )
    assert "pytorch 2.0 to 2.14" in (info.value.hint or "")


def test_several_releases_pin_a_companion_range() -> None:
    plan = compat.plan(torch(">=2.4,<2.6", "12.4"), "linux-64", "3.11", ["torchvision"])
    assert plan.requirements[1:] == ("torchvision>=0.19,<0.21",)


def test_tensorflow_companions_follow_the_release() -> None:
    # tf-keras 2.20.1 / tensorflow-text 2.20.1 METADATA: tensorflow<2.21,>=2.20
    plan = compat.plan(
        Framework("tensorflow", "2.20", "12.5"), "linux-64", "3.11", ["tf-keras", "tensorflow-text"]
    )
    assert plan.requirements == (
        "tensorflow[and-cuda]==2.20.*",
        "tf-keras==2.20.*",
        "tensorflow-text==2.20.*",
    )
    # tensorflow-io 0.37.1, the newest, declares tensorflow<2.17
    with pytest.raises(CompatError, match="no tensorflow-io release"):
        compat.plan(Framework("tensorflow", "2.20", "cpu"), "linux-64", "3.11", ["tensorflow-io"])


def test_jax_companions_are_pinned_to_the_jax_release() -> None:
    # jax 0.12.0.1 METADATA: jaxlib<=0.12.0.1,>=0.11.2; jax-cuda13-plugin pins jax-cuda13-pjrt==0.12.0.1
    plan = compat.plan(
        Framework("jax", "0.12", "13"), "linux-64", "3.12", ["jaxlib", "jax-cuda13-pjrt==0.12.0.1"]
    )
    assert plan.requirements == ("jax[cuda13]==0.12.*", "jaxlib==0.12.*", "jax-cuda13-pjrt==0.12.*")


def test_packages_that_are_not_companions_get_no_pin() -> None:
    plan = compat.plan(torch("2.9", "12.8"), "linux-64", "3.11", ["numpy<2.4", "not a requirement ("])
    assert plan.requirements == ("torch==2.9.*",)


def test_every_companion_row_names_its_source_and_exists_for_the_framework() -> None:
    for name in FRAMEWORKS:
        info = compat.framework(name)
        for r in info.releases:
            for companion, newest in r.companions:
                assert companion in info.companions, (name, r.version, companion)
                assert newest[0].isdigit(), (name, r.version, companion)
    torch_rows = {r.version: r for r in compat.framework("pytorch").releases}
    assert torch_rows["2.9"].companion("torchvision") == "0.24.1"
    assert torch_rows["2.9"].companion("torchaudio") == "2.9.1"
    assert torch_rows["2.12"].companion("torchaudio") is None


# --- CUDA runtime ranges (issue 11 item 11) ---------------------------------------------
# Facts: tensorflow 2.20.0 METADATA: nvidia-cuda-runtime-cu12<13.0,>=12.5.82; extra == "and-cuda"
# (2.19.1: ==12.5.82); jax-cuda12-plugin: nvidia-cuda-runtime-cu12>=12.1.105.


def tf(version: str, cuda: str) -> Framework:
    return Framework("tensorflow", version, cuda)


def test_tensorflow_220_accepts_any_cuda_12_runtime_from_1255_up() -> None:
    fw = tf("2.20", "12.5")
    plan = compat.plan(fw, "linux-64", "3.11")
    # what PyPI resolves today: 12.9.79, within the release's own range
    compat.check_resolved(
        fw, plan, "linux-64", {"tensorflow": "2.20.0", "nvidia-cuda-runtime-cu12": "12.9.79"}
    )
    with pytest.raises(CheckFailed) as info:
        compat.check_resolved(
            fw, plan, "linux-64", {"tensorflow": "2.20.0", "nvidia-cuda-runtime-cu12": "12.4.127"}
        )
    assert "not the >=12.5.82,<13 that tensorflow 2.20 asks for" in info.value.message


def test_tensorflow_219_still_needs_its_exact_runtime() -> None:
    fw = tf("2.19", "12.5")
    plan = compat.plan(fw, "linux-64", "3.11")
    compat.check_resolved(
        fw, plan, "linux-64", {"tensorflow": "2.19.1", "nvidia-cuda-runtime-cu12": "12.5.82"}
    )
    with pytest.raises(CheckFailed):
        compat.check_resolved(
            fw, plan, "linux-64", {"tensorflow": "2.19.1", "nvidia-cuda-runtime-cu12": "12.9.79"}
        )


def test_jax_runtime_range_is_per_cuda_major() -> None:
    fw = Framework("jax", "0.8", "13")
    plan = compat.plan(fw, "linux-64", "3.11")
    compat.check_resolved(fw, plan, "linux-64", {"jax": "0.8.3", "nvidia-cuda-runtime": "13.1.80"})
    with pytest.raises(CheckFailed):
        compat.check_resolved(fw, plan, "linux-64", {"jax": "0.8.3", "nvidia-cuda-runtime-cu12": "12.9.79"})


def test_every_runtime_range_is_a_valid_specifier_for_a_listed_variant() -> None:
    for name in FRAMEWORKS:
        for r in compat.framework(name).releases:
            for variant, spec in r.cuda_runtime:
                assert variant in r.cuda, (name, r.version, variant)
                SpecifierSet(spec)
    rows = {r.version: r for r in compat.framework("tensorflow").releases}
    assert rows["2.20"].runtime_spec("12.5") == ">=12.5.82,<13"
    assert rows["2.19"].runtime_spec("12.5") == "==12.5.82"


def test_companion_rows_show_pins_and_runtime_ranges() -> None:
    headers, rows = compat.companion_rows("tensorflow")
    assert headers == ["release", "companions", "cuda runtime"]
    by_release = {r[0]: r for r in rows}
    assert by_release["2.20"][1:] == ["tf-keras, tensorflow-text 2.20.1", "12.5: >=12.5.82,<13"]
    assert by_release["2.12"][2] == "-"  # no CUDA build on PyPI
    torch_rows = {r[0]: r for r in compat.companion_rows("pytorch")[1]}
    assert torch_rows["2.9"][1:] == ["torchvision 0.24.1, torchaudio 2.9.1", "==<cuda>.*"]
    assert torch_rows["2.15"][1] == "-"
    jax_rows = {r[0]: r for r in compat.companion_rows("jax")[1]}
    assert jax_rows["0.6"][1] == "jaxlib, jax-cuda12-plugin, jax-cuda12-pjrt 0.6.2"


def test_every_companion_of_the_release_is_a_constraint() -> None:
    # a package that requires torchaudio without a pin must not drift either
    plan = compat.plan(torch("2.9", "12.8"), "linux-64", "3.11")
    assert plan.requirements == ("torch==2.9.*",)
    assert plan.constraints == ("torchvision==0.24.*", "torchaudio==2.9.*")
    # a release without torchaudio constrains only what it has
    assert compat.plan(torch("2.12", "13.0"), "linux-64", "3.12").constraints == ("torchvision==0.27.*",)
    assert compat.plan(torch(">=2.4,<2.6", "12.4"), "linux-64", "3.11").constraints == (
        "torchvision>=0.19,<0.21",
        "torchaudio>=2.4,<2.6",
    )


def test_a_companion_pin_outside_several_releases_names_each_compatible_series() -> None:
    with pytest.raises(CompatError) as info:
        compat.plan(torch(">=2.4,<2.6", "12.4"), "linux-64", "3.11", ["torchvision==0.22.1"])
    assert info.value.hint == (
        "pytorch 2.4, 2.5 pair with torchvision 0.19.* (newest 0.19.1) or 0.20.* (newest 0.20.1): "
        "change or drop the pin (see: envlock matrix pytorch)"
    )
