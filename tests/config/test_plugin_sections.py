"""Sections validated through the registry by their kind: the cluster profile (a plugin can bring a
cluster kind with its config model; unknown kinds list the known ones) and ``label.kind: ase``
(the calculator's import path checked at validation time)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field

from elt import registry
from elt.config import load_profile, parse_workflow
from elt.config.cluster import PROFILE_DIR, ClusterBase, LocalProfile, parse_profile
from elt.errors import ConfigError

MIN = {"system": {"structures": [{"kind": "bulk", "element": "Cu", "supercell": [2, 2, 2]}]}}


@registry.register_config("cluster", "test-local-env")
class EnvProfile(LocalProfile):
    kind: Literal["test-local-env"] = Field(description="A local cluster whose workers get extra variables.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the worker processes.")


@registry.register_config("cluster", "test-not-a-profile")
class NotAProfile(ClusterBase.__base__):  # a PluginConfig that is not a cluster profile
    kind: Literal["test-not-a-profile"] = "test-not-a-profile"


def _problems(fn, *args) -> list[str]:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return e.value.problems


def test_unknown_cluster_kind_lists_the_known_ones_plugins_included():
    [p] = _problems(parse_profile, {"kind": "kubernetes"})
    assert p.startswith("kind: unknown cluster kind 'kubernetes'"), p  # the field that is wrong, not "(top level)"
    known = p.split("use one of: ")[1].split(";")[0].split(", ")
    assert {"address", "local", "slurm", "test-local-env"} <= set(known) and known == sorted(known), p


def test_a_plugin_brings_a_cluster_kind_with_its_config_model():
    p = load_profile({"kind": "test-local-env", "n_workers": 2, "env": {"OMP_NUM_THREADS": "1"}})
    assert isinstance(p, EnvProfile) and p.workers() == 2 and p.env == {"OMP_NUM_THREADS": "1"}
    assert p.exec_settings().threads == 1
    # the plugin's model checks its fields as the built-ins do: under the kind, typos named
    [problem] = _problems(load_profile, {"kind": "test-local-env", "evn": {}})
    assert problem.startswith("test-local-env.evn: unknown key"), problem


def test_a_plugin_profile_must_be_a_cluster_profile():
    [problem] = _problems(parse_profile, {"kind": "test-not-a-profile"})
    assert "must subclass elt.config.cluster.ClusterBase" in problem


def test_builtin_profiles_keep_their_messages():
    assert _problems(parse_profile, {"kind": "local", "n_wokers": 3}) == [
        "local.n_wokers: unknown key (typo?); remove it or check the spelling"]
    assert _problems(parse_profile, {"kind": "address"}) == ["address.address: required field is missing"]
    assert isinstance(parse_profile({}), LocalProfile)  # no kind: local


def test_shipped_profiles_are_the_builtin_models():
    kinds = {p.stem: load_profile(str(p)).kind for p in PROFILE_DIR.glob("*.yaml")}
    assert kinds == {"local": "local", "slurm": "slurm", "slurm-localhost": "slurm", "address": "address"}


# ------------------------------------------------------------------ label.kind: ase
def _label(label: dict):
    return parse_workflow({**MIN, "label": label}, "wf.yaml").label


def test_ase_label_takes_a_calculator_by_import_path():
    lab = _label({"kind": "ase", "calculator": "ase.calculators.lj:LennardJones", "parameters": {"sigma": 2.3}})
    from ase.calculators.lj import LennardJones

    assert lab.factory() is LennardJones and lab.parameters == {"sigma": 2.3}
    assert _label({"kind": "ase", "calculator": "ase.calculators.lj.LennardJones"}).factory() is LennardJones


@pytest.mark.parametrize("calculator,expect", [
    ("ase.calculators.emt:EMTX", "module 'ase.calculators.emt' has no 'EMTX'; write calculator: 'ase.calculators.emt:EMT'"),
    ("ase.calculators.nope:X", "module 'ase.calculators.nope' cannot be imported"),
    ("EMT", "'EMT' is not an import path; write calculator: 'package.module:Name'"),
    ("ase.units:Hartree", "'ase.units:Hartree' is a float, not a class or function"),
])
def test_a_bad_calculator_path_is_a_config_error_that_says_what_to_write(calculator, expect):
    [problem] = _problems(parse_workflow, {**MIN, "label": {"kind": "ase", "calculator": calculator}}, "wf.yaml")
    assert problem.startswith("label.ase.calculator: ") and expect in problem, problem


def test_ase_label_leaves_the_folder_to_elt():
    [problem] = _problems(parse_workflow, {**MIN, "label": {"kind": "ase", "calculator": "ase.calculators.emt:EMT",
                                                            "parameters": {"directory": "/tmp/x"}}}, "wf.yaml")
    assert "remove 'directory'" in problem
