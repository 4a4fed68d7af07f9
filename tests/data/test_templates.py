"""`elt init`: every template validates as written (workflow and both cluster profiles), builds
its start structures; the bulk-metal template runs a short loop with EMT (the shared run)."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from elt.config.cluster import PROFILE_DIR
from elt.cli.main import main
from elt.config import load_profile, load_workflow
from elt.data.structures import start_structures
from elt.data.templates import TEMPLATES, water_box, write_template
from elt.engine.state import open_readonly

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_validates_as_written(name, tmp_path):
    assert main(["init", name, str(tmp_path / name)]) == 0
    d = tmp_path / name
    wf = load_workflow(d / "workflow.yaml")
    assert wf.name == name
    assert load_profile(wf.cluster, wf.base_dir).kind == "local"
    assert load_profile("slurm", wf.base_dir).kind == "slurm"  # what `elt run ... --cluster slurm` takes
    frames = start_structures(wf.system, wf.base_dir)
    assert frames and all(len(a) > 0 for a in frames)
    text = (d / "workflow.yaml").read_text()
    assert text.count("#") > 15  # commented for a first-time user


def test_profiles_are_the_shipped_ones(tmp_path):
    write_template("bulk-metal", tmp_path)
    for name in ("local.yaml", "slurm.yaml"):
        assert (tmp_path / name).read_text() == (PROFILE_DIR / name).read_text()
    # the repository's cluster_profiles/ is the package's folder itself, not a copy that could drift
    assert (REPO / "cluster_profiles").resolve() == PROFILE_DIR.resolve()


def test_init_refuses_to_overwrite_and_unknown_templates(tmp_path, capsys):
    assert main(["init", "bulk-metal", str(tmp_path)]) == 0
    assert main(["init", "bulk-metal", str(tmp_path)]) == 3
    assert "--force" in capsys.readouterr().err
    assert main(["init", "bulk-metal", str(tmp_path), "--force"]) == 0
    assert main(["init", "liquid-unicorn", str(tmp_path / "x")]) == 2


def test_water_box_density_and_distances():
    box = water_box()
    assert box.get_chemical_formula() == "H54O27"
    density = box.get_masses().sum() * 1.66053906660e-24 / (box.get_volume() * 1e-24)
    assert density == pytest.approx(1.0, rel=1e-6)
    d = box.get_all_distances(mic=True)
    mol = np.repeat(np.arange(27), 3)
    assert d[mol[:, None] != mol[None, :]].min() >= 1.6
    oh = [d[3 * i, 3 * i + 1] for i in range(27)] + [d[3 * i, 3 * i + 2] for i in range(27)]
    assert np.allclose(oh, oh[0])  # molecules rigidly rotated, not distorted


def test_bulk_metal_template_runs_a_short_loop_with_emt(tiny_run, tinyrun_module):
    """The shared run is the bulk-metal template written by `elt init`, with sizes shrunk."""
    wf = yaml.safe_load((tiny_run.parent / "init" / "workflow.yaml").read_text())
    assert wf["label"]["kind"] == "emt" and wf["system"]["structures"][0]["element"] == "Cu"
    with open_readonly(tiny_run) as st:
        recs = st.iterations()
        assert st.get_meta("final") is not None
    assert [r["iteration"] for r in recs] == [0, 1]
    assert all(r["labels_ok"] > 0 for r in recs)
    assert sorted(p.name for p in (tiny_run / "model").glob("member_*.pt")) == ["member_0.pt", "member_1.pt"]
