"""Pure pieces of the reports: rank correlation, class counts, time estimates."""

import numpy as np
import pytest

from elt.data.modeldevi import COLUMNS, classify, counts, read_model_devi
from elt.reporting.modeldevi import write_aggregate
from elt.reporting.stats import force_errors, spearman
from elt.reporting.status import current_position, estimate_remaining, mean_phase_seconds


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(10):
        x = rng.integers(0, 4, 15).astype(float)
        y = x + rng.normal(size=15)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_spearman_edge_cases():
    assert spearman([1, 2], [2, 1]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3, np.nan], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_force_errors():
    pred = np.zeros((2, 3))
    ref = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    mx, rms = force_errors(pred, ref)
    assert mx == pytest.approx(5.0) and rms == pytest.approx(np.sqrt(26 / 6))


def test_count_classes_dpgen_semantics():
    f = np.array([0.01, 0.05, 0.1, 0.3, 0.31, np.nan])
    assert counts(classify(f, 0.05, 0.3)) == {"accurate": 1, "candidate": 2, "failed": 3}


RECS = [{"iteration": i, "seconds": {"train": t, "explore": 10.0, "select": 1.0, "label": 20.0}, "finished": 1000.0 + 100 * i}
        for i, t in enumerate((100.0, 40.0, 50.0, 60.0))]


def test_phase_means_use_the_last_iterations():
    m = mean_phase_seconds(RECS)
    assert m["train"] == pytest.approx(50.0) and m["label"] == pytest.approx(20.0)


def test_estimate_remaining():
    m = {"train": 50.0, "explore": 10.0, "select": 1.0, "label": 20.0}
    assert estimate_remaining(m, "train", 20.0) == pytest.approx(30 + 10 + 1 + 20)
    assert estimate_remaining(m, "explore", 100.0) == pytest.approx(0 + 1 + 20)
    assert estimate_remaining({}, "train", 0.0) is None


def test_current_position_from_tasks_and_journal():
    now = 1300.0 + 30
    tasks = [{"kind": "train", "iteration": 4, "status": "done"}] * 2
    events = [{"t": 1301.0, "event": "start", "task": "train:a"}, {"t": 1305.0, "event": "end", "task": "train:a"},
              {"t": 1301.0, "event": "start", "task": "train:b"}, {"t": 1306.0, "event": "end", "task": "train:b"},
              {"t": 1310.0, "event": "start", "task": "explore:c"}, {"t": 1311.0, "event": "start", "task": "explore:d"},
              {"t": 1320.0, "event": "end", "task": "explore:c"},
              {"t": 900.0, "event": "start", "task": "label:old"}]  # before this iteration: ignored
    pos = current_position(RECS, tasks, events, now)
    assert pos["iteration"] == 4 and pos["phase"] == "explore"
    assert pos["running"] == {"explore": 1}
    assert pos["phase_elapsed_s"] == pytest.approx(20.0)
    assert pos["elapsed_s"] == pytest.approx(29.0)  # since the iteration's first training started
    assert pos["eta_s"] == pytest.approx(0.0 + 1.0 + 20.0)


def test_before_the_first_training_the_phase_is_the_initial_data():
    events = [{"t": 10.0, "event": "start", "task": "label:x"}, {"t": 11.0, "event": "start", "task": "label:y"}]
    tasks = [{"kind": "label", "iteration": -1, "status": "done"}]
    pos = current_position([], tasks, events, now=20.0)
    assert pos["phase"] == "initial data" and pos["iteration"] == 0 and pos["eta_s"] is None
    events.append({"t": 15.0, "event": "start", "task": "train:z"})
    assert current_position([], tasks, events, now=20.0)["phase"] == "train"


def test_aggregate_copies_rows_and_leaves_out_a_half_written_line(tmp_path):
    rng = np.random.default_rng(1)
    full = np.column_stack([np.arange(4) * 10.0, rng.random((4, 7))])
    np.savetxt(tmp_path / "a.out", full, fmt=["%12d"] + ["%19.6e"] * 7, header=" ".join(COLUMNS))
    partial = np.column_stack([np.arange(3) * 10.0, rng.random((3, 7))])
    np.savetxt(tmp_path / "b.out", partial, fmt=["%12d"] + ["%19.6e"] * 7, header=" ".join(COLUMNS))
    text = (tmp_path / "b.out").read_text()
    (tmp_path / "b.out").write_text(text[:-40])  # a walker's file caught while it is written
    write_aggregate([("w0", tmp_path / "a.out"), ("w1", tmp_path / "b.out")], tmp_path / "agg" / "it.out")
    agg = read_model_devi(tmp_path / "agg" / "it.out")
    assert agg.shape == (4 + 2, 8)
    assert np.allclose(agg[:4], full, rtol=1e-6) and np.allclose(agg[4:], partial[:2], rtol=1e-6)
    assert "# walker w1: " in (tmp_path / "agg" / "it.out").read_text()


def test_top_fraction_recall():
    from elt.reporting.stats import top_fraction_recall

    err = np.arange(20.0)
    assert top_fraction_recall(err, err) == 1.0                 # same ranking: both worst frames flagged
    assert top_fraction_recall(-err, err) == 0.0                # reversed: none
    devi = err.copy()
    devi[[18, 0]] = devi[[0, 18]]                               # one of the two worst frames lost
    assert top_fraction_recall(devi, err) == 0.5
    assert top_fraction_recall(err[:9], err[:9]) is None        # fewer than 10 frames: no top decile
