"""`elt report` on a real small run: the table's numbers against the stored files, plots, JSON,
HTML, the per-iteration detail, and a run in progress."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from elt.cli.main import main
from elt.data.frames import MAX_DEVI_F, PRED_FORCES, labels_of, read_frames
from elt.engine.plan import stop_text
from elt.engine.state import open_readonly
from elt.reporting.collect import collect, iteration_row
from elt.data.modeldevi import COLUMNS
from elt.reporting.plots import PLOTS
from elt.reporting.tables import row_cells, summary_rows


def walker_tables(run_dir: Path, it: int) -> list[np.ndarray]:
    files = sorted((run_dir / f"iter_{it:03d}" / "explore").glob("*/model_devi.out"))
    assert files, f"no model_devi.out in iteration {it}"
    return [np.loadtxt(f, ndmin=2) for f in files]


def classes_from_files(run_dir: Path, it: int, lo: float, hi: float) -> tuple[np.ndarray, int, int]:
    """All max_devi_f of an iteration and its accurate/failed counts, from the walkers' files: a
    frame is failed at or above hi, and so is the frame that stopped a walker on a physical problem."""
    fs, acc, fail = [], 0, 0
    for d in sorted((run_dir / f"iter_{it:03d}" / "explore").iterdir()):
        f = np.loadtxt(d / "model_devi.out", ndmin=2)[:, 4]
        bad_stop = json.loads((d / "result.json").read_text())["stop_reason"].split(" ")[0] in ("nan", "too_close", "energy_spike")
        ok = np.isfinite(f) & (f < hi)
        if bad_stop:
            ok[-1] = False
        acc += int(np.sum(ok & (f < lo)))
        fail += int(np.sum(~ok))
        fs.append(f)
    return np.concatenate(fs), acc, fail


def test_table_numbers_equal_those_of_the_stored_files(tiny_run, tinyrun_module):
    lo, hi = tinyrun_module.TRUST
    rep = collect(tiny_run)
    assert [r["iteration"] for r in rep["iterations"]] == [0, 1]
    size = len(read_frames(tiny_run / "data" / "init.extxyz"))
    for r in rep["iterations"]:
        it = r["iteration"]
        f, acc, fail = classes_from_files(tiny_run, it, lo, hi)
        assert r["devi"]["classes"] == {"accurate": acc, "candidate": len(f) - acc - fail, "failed": fail}
        assert (r["frames"], r["accurate"], r["failed"]) == (len(f), acc, fail)
        assert r["candidate"] == len(f) - acc - fail
        assert r["accurate_ratio"] == pytest.approx(acc / len(f))
        assert (r["trust_lo"], r["trust_hi"]) == (lo, hi)
        assert r["devi"]["max"] == pytest.approx(np.nanmax(f), rel=1e-6)
        # labels and data-set size against the data files
        labeled = read_frames(tiny_run / "data" / f"iter_{it:03d}.extxyz")
        size += len(labeled)
        assert r["labels_ok"] == len(labeled) and r["dataset_size"] == size
        # training RMSE: the mean over the members' own result files
        members = [json.loads(p.read_text()) for p in sorted((tiny_run / f"iter_{it:03d}" / "train").glob("*/result.json"))]
        assert r["rmse"]["train"]["f"] == pytest.approx(np.mean([m["metrics"]["train"]["rmse_f"] for m in members]))
        # the rendered cells show the same numbers
        cells = row_cells(r)
        assert cells[3] == str(len(f))
        assert cells[4] == f"{100 * acc / len(f):.1f}%" and cells[6] == f"{100 * fail / len(f):.1f}%"
        assert cells[7] == f"{lo:g} / {hi:g}"
        assert cells[10] == str(size)
        # walkers: per-walker frames add up, candidates come from walkers that had candidate frames
        assert sum(w["frames"] for w in r["walker_list"]) == len(f)
        assert sum(w["labeled"] for w in r["walker_list"]) == len(labeled)


def test_model_devi_files_have_dpgen_columns(tiny_run, tinyrun_module):
    for it in (0, 1):
        for f in sorted((tiny_run / f"iter_{it:03d}" / "explore").glob("*/model_devi.out")):
            assert f.read_text().splitlines()[0] == "# " + " ".join(COLUMNS)
            t = np.loadtxt(f, ndmin=2)
            assert t.shape[1] == 8
            assert np.all(t[:, 0] % tinyrun_module.RECORD_EVERY == 0)
            assert np.all(t[:, 4] >= t[:, 6]) and np.all(t[:, 6] >= t[:, 5])  # max >= avg >= min


def test_true_error_of_labeled_frames_and_rank_correlation(tiny_run):
    rep = collect(tiny_run)
    rows = [x for r in rep["iterations"] for x in r["labeled"]]
    frames = [a for it in (0, 1) for a in read_frames(tiny_run / "data" / f"iter_{it:03d}.extxyz")]
    assert len(rows) == len(frames) > 0
    for x, a in zip(rows, frames):
        assert PRED_FORCES in a.arrays and x["max_devi_f"] == a.info[MAX_DEVI_F]
        _, f_ref, _ = labels_of(a)
        err = np.linalg.norm(a.arrays[PRED_FORCES] - f_ref, axis=1).max()
        assert x["force_error_max"] == pytest.approx(err)
    scipy_stats = pytest.importorskip("scipy.stats")
    rho = scipy_stats.spearmanr([x["max_devi_f"] for x in rows], [x["force_error_max"] for x in rows]).statistic
    assert rep["correlation"]["n"] == len(rows)
    assert rep["correlation"]["spearman"] == pytest.approx(rho)


def test_json_round_trips(tiny_run, capsys):
    capsys.readouterr()
    assert main(["report", str(tiny_run), "--json"]) == 0
    text = capsys.readouterr().out
    loaded = json.loads(text)
    again = json.loads(json.dumps(collect(tiny_run), allow_nan=False))
    assert loaded == again
    assert loaded["units"]["force"].startswith("eV/Å") and loaded["units"]["energy per atom"].startswith("eV/atom")
    assert summary_rows(loaded) == summary_rows(collect(tiny_run))
    assert not (tiny_run / "report").exists()  # --json alone writes nothing


def test_plots_html_and_aggregated_model_devi(tiny_run, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(tiny_run), "--html", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Spearman" in printed
    for name in PLOTS:
        p = out / name
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(PLOTS)
    assert "http://" not in page and "https://" not in page  # readable offline
    assert "s0-T300-w0" in page
    recs = open_readonly(tiny_run).iterations()
    for r in recs:
        agg = out / "model_devi" / f"iter_{r['iteration']:03d}.out"
        t = np.loadtxt(agg, ndmin=2)
        assert t.shape == (r["frames"], 8)
        assert np.allclose(np.sort(t[:, 4]), np.sort(np.concatenate([w[:, 4] for w in walker_tables(tiny_run, r["iteration"])])))


def test_iteration_detail_names_walkers_and_files(tiny_run, capsys):
    capsys.readouterr()
    assert main(["report", str(tiny_run), "--iteration", "0", "--no-plots"]) == 0
    out = capsys.readouterr().out
    rec = open_readonly(tiny_run).iterations()[0]
    for name in rec["explore_tasks"]:
        assert name.rsplit("-", 1)[0] in out
    row = iteration_row(collect(tiny_run), 0)
    assert all(Path(w["model_devi_file"]).is_file() for w in row["walker_list"])
    with_cands = [w["walker"] for w in row["walker_list"] if w["candidates"]]
    assert with_cands and {x["walker"] for x in row["labeled"]} <= set(with_cands)
    assert main(["report", str(tiny_run), "--iteration", "9", "--no-plots"]) == 2


def _in_progress_copy(run_dir: Path, dst: Path, keep: int) -> Path:
    """A copy of the run as it stood before iteration ``keep`` was recorded (no final meta)."""
    shutil.copytree(run_dir, dst)
    db = sqlite3.connect(dst / "state.db")
    with db:
        db.execute("DELETE FROM iterations WHERE iteration >= ?", (keep,))
        db.execute("DELETE FROM meta WHERE key IN ('final', 'test', 'ending')")
        db.execute("DELETE FROM tasks WHERE iteration > ?", (keep,))  # nothing after it had run
    db.close()
    return _journal_as_state(dst)


def _journal_as_state(run_dir: Path) -> Path:
    """Keep the journal lines of the tasks left in the copy's state: a journal that tells of later
    tasks would put the run (and its current phase) further on than its state."""
    with open_readonly(run_dir) as st:
        kept = {f"{t['kind']}:{t['id']}" for t in st.tasks()}
    p = run_dir / "journal.log"
    p.write_text("".join(line + "\n" for line in p.read_text().splitlines() if json.loads(line)["task"] in kept))
    return run_dir


def test_report_and_status_of_a_run_in_progress(tiny_run, tmp_path, capsys):
    copy = _in_progress_copy(tiny_run, tmp_path / "partial", keep=1)
    rep = collect(copy)
    assert rep["state"] == "stopped" and rep["final"] is None
    assert [r["iteration"] for r in rep["iterations"]] == [0]
    cur = rep["current"]
    assert cur["iteration"] == 1 and cur["status"] == "in progress" and cur["phase"] == "label"
    f = np.concatenate([t[:, 4] for t in walker_tables(copy, 1)])
    assert cur["frames"] == len(f) == cur["devi"]["frames"]
    assert cur["temperatures"] == [300.0, 700.0]
    # paths are read from the copy, not from where the run was made
    assert all(w["model_devi_file"].startswith(str(copy)) for w in cur["walker_list"])
    capsys.readouterr()
    assert main(["report", str(copy), "-o", str(tmp_path / "rep")]) == 0
    assert "in progress" in capsys.readouterr().out
    assert all((tmp_path / "rep" / p).is_file() for p in PLOTS)
    assert main(["status", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "current: iteration 1, phase label (iteration 0 ran stage 0 'warm')" in out and "interrupted" in out


def test_report_and_status_name_the_final_training_after_the_loop_ended(tiny_run, tmp_path, capsys):
    """A copy of the run as it stood in its final training: no iteration is in progress, status and
    report name the phase and the loop's stop reason (the final test: tests/engine/test_live_status.py)."""
    with open_readonly(tiny_run) as st:
        n = len(st.iterations())
        reason = json.loads(st.get_meta("ending"))["status"]
    phase, copy = "final training", tmp_path / "final_training"
    shutil.copytree(tiny_run, copy)
    db = sqlite3.connect(copy / "state.db")
    with db:
        db.execute("DELETE FROM meta WHERE key IN ('final', 'test')")
        db.execute("DELETE FROM tasks WHERE iteration >= ? AND kind != 'train'", (n,))  # the final test
    db.close()
    _journal_as_state(copy)
    rep = collect(copy)
    assert rep["current"] is None and rep["final"] is None
    assert rep["finishing"] == {"phase": phase, "status": reason}
    capsys.readouterr()
    assert main(["report", str(copy), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f": stopped ({phase}; the loop has ended: {stop_text(reason)})" in out and "in progress" not in out
    assert main(["status", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"current: {phase} (the loop has ended: {stop_text(reason)}) (interrupted" in out, out
    assert f"iteration {n}," not in out and "\nfinished:" not in out


def test_report_of_a_run_before_its_first_iteration(tiny_run, tmp_path, capsys):
    copy = _in_progress_copy(tiny_run, tmp_path / "early", keep=0)
    db = sqlite3.connect(copy / "state.db")
    with db:
        db.execute("DELETE FROM tasks WHERE iteration >= 0 AND kind != 'train'")
    db.close()
    _journal_as_state(copy)
    rep = collect(copy)
    assert rep["iterations"] == [] and rep["current"]["phase"] == "train"
    assert rep["correlation"]["n"] == 0
    assert main(["report", str(copy), "--html", "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()


def test_not_a_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 6
    assert "no elt run" in capsys.readouterr().err


def test_reporting_imports_neither_torch_nor_dask():
    code = ("import sys, elt.reporting.collect, elt.reporting.plots, elt.reporting.html, elt.reporting.status, "
            "elt.reporting.outputs, elt.cli.report; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'dask', 'distributed'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_failed_labels_are_reported_with_reason_walker_and_task_dir(tiny_run, tmp_path, capsys):
    """A label that failed is recorded by the loop in the iteration record (reason, message, task
    folder); the report shows it in the table, and in the detail with its walker and folder."""
    copy = tmp_path / "failed"
    shutil.copytree(tiny_run, copy)
    with open_readonly(copy) as st:
        rec = st.iterations()[1]
        explore = [t["result"] for t in st.tasks(kind="explore", iteration=1)]
    walker = next(r for r in explore if r["candidates"])
    fid = walker["candidates"][-1]["frame_id"]
    workdir = copy / "label" / "0123456789abcdef"
    workdir.mkdir()
    rec["failures"] = [{"task": "0123456789abcdef", "frame_id": fid, "reason": "scf_not_converged",
                        "message": "SCF did not converge in 100 cycles", "physics": True, "workdir": str(workdir)}]
    rec["labels_failed"] = 1
    db = sqlite3.connect(copy / "state.db")
    with db:
        db.execute("UPDATE iterations SET record=? WHERE iteration=1", (json.dumps(rec),))
    db.close()
    row = iteration_row(collect(copy), 1)
    assert row["failure_reasons"] == {"scf_not_converged": 1}
    assert row["failures"][0]["task_dir"] == str(workdir)
    w = next(x for x in row["walker_list"] if x["walker"] == walker["walker"])
    assert w["labels_failed"] == 1
    assert "scf_not_converged ×1" in row_cells(row)[9] and row_cells(row)[8].endswith("-1")
    capsys.readouterr()
    assert main(["report", str(copy), "-i", "1", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "SCF did not converge in 100 cycles" in out and str(workdir) in out


def test_plots_of_an_empty_run_say_so_and_one_iteration_gets_whole_ticks(tmp_path):
    from elt.reporting.plots import _integer_x, _plt, plot_dataset_rmse, plot_devi_hist, plot_ratios

    plt = _plt()
    empty = {"iterations": [], "current": None, "correlation": {"n": 0, "spearman": None}}
    for plot in (plot_devi_hist, plot_ratios, plot_dataset_rmse):
        plot(empty, tmp_path / f"{plot.__name__}.png", plt)
        assert (tmp_path / f"{plot.__name__}.png").stat().st_size > 0
    fig, ax = plt.subplots()
    ax.plot([3], [0.5], "o")
    _integer_x(ax, [3])
    fig.canvas.draw()
    assert list(ax.get_xticks()) == [3]  # not 2.8, 3.0, 3.2
    plt.close(fig)
