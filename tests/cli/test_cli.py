"""The CLI as a user meets it: messages, exit codes, no tracebacks."""

import subprocess
import sys
from pathlib import Path

from elt.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_validate_ok(capsys):
    assert main(["validate", str(ROOT / "workflows/quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "label emt" in out and "per iteration" in out


def test_validate_bad_file_exit_2_no_traceback(tmp_path, capsys):
    bad = tmp_path / "wf.yaml"
    bad.write_text("system:\n  structures: [{kind: bulk, element: Cu}]\nselect:\n  trust_lo: 0.3\n  trust_hi: 0.1\n  max_candidate: 3\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "select.max_candidate: unknown key" in err
    assert "Traceback" not in err
    bad.write_text("system:\n  structures: [{kind: bulk, element: Cu}]\nselect:\n  trust_lo: 0.3\n  trust_hi: 0.1\n")
    assert main(["validate", str(bad)]) == 2
    assert "trust_lo (0.3) must be below trust_hi (0.1)" in capsys.readouterr().err


def test_validate_missing_file_and_bad_yaml(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "wf.yaml"
    bad.write_text("system: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_validate_checks_the_backend(tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text("system:\n  structures: [{kind: bulk, element: Si, crystal: diamond, a: 5.43}]\nlabel: {kind: emt}\n")
    assert main(["validate", str(wf)]) == 3
    err = capsys.readouterr().err
    assert "EMT has no parameters for Si" in err


def test_validate_takes_several_files_and_says_ok_only_after_every_check(tmp_path, capsys):
    good = ROOT / "workflows" / "quickstart.yaml"
    profile = ROOT / "cluster_profiles" / "slurm.yaml"
    missing = tmp_path / "missing.yaml"  # valid YAML and schema, but its structure file is not there
    missing.write_text("system:\n  structures: [nowhere.xyz]\n")
    assert main(["validate", str(good), str(profile), str(missing)]) == 3
    out, err = capsys.readouterr()
    assert f"ok {good}" in out and f"ok {profile}: cluster profile (kind slurm)" in out
    assert f"ok {missing}" not in out and "nowhere.xyz" in err


def test_yaml_tabs_get_a_hint_and_traceback_keeps_the_exit_code(tmp_path, capsys):
    bad = tmp_path / "wf.yaml"
    bad.write_text("system:\n\tstructures: []\n")
    assert main(["validate", str(bad)]) == 2
    assert "tabs" in capsys.readouterr().err
    assert main(["--traceback", "validate", str(bad)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_dry_run_names_the_cluster(capsys):
    assert main(["run", str(ROOT / "workflows/quickstart.yaml"), "--dry-run", "--cluster", "slurm"]) == 0
    assert "cluster: slurm (slurm)" in capsys.readouterr().out


def test_status_of_a_non_run(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 6
    assert "holds no elt run" in capsys.readouterr().err


def test_console_script_exit_code_in_a_real_process(tmp_path):
    bad = tmp_path / "wf.yaml"
    bad.write_text("sytem: {}\n")
    r = subprocess.run([sys.executable, "-c", "from elt.cli.main import entry; entry()", "validate", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "sytem: unknown key" in r.stderr and "Traceback" not in r.stderr


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2


def test_typer_runner_help_and_exit_codes():
    from typer.testing import CliRunner

    from elt.cli.main import app

    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("run", "validate", "status"):
        assert cmd in r.output
    r = CliRunner().invoke(app, ["run", "--help"])
    assert "--dry-run" in r.output and "--workdir" in r.output


def _tree(p: Path) -> dict:
    return {str(f): f.stat().st_mtime_ns for f in p.rglob("*")} if p.exists() else {}


def test_dry_run_lists_planned_tasks(capsys):
    before = _tree(ROOT / "workflows")  # a quickstart run of the user's may be there already
    assert main(["run", str(ROOT / "workflows/quickstart.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 train tasks" in out and "explore tasks" in out and "label tasks (emt)" in out
    assert _tree(ROOT / "workflows") == before  # nothing was run or written


def test_bad_physics_is_refused_at_validation(tmp_path, capsys):
    for stage, field in (("{temperatures: [-300]}", "temperatures[0]"), ("{timestep: .inf}", "timestep"),
                         ("{ensemble: npt, pressures: [.nan]}", "pressures[0]")):
        wf = tmp_path / "wf.yaml"
        wf.write_text("system:\n  structures: [{kind: bulk, element: Cu}]\nexplore:\n  stages: [" + stage + "]\n")
        assert main(["validate", str(wf)]) == 2, stage
        assert f"explore.stages[0].{field}" in capsys.readouterr().err
