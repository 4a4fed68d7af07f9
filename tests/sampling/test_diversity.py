"""Diversity selection (farthest-point sampling) and the adaptive lower trust level."""

import numpy as np
import pytest

from elt.sampling.fps import farthest_point_sampling, frame_vector, frame_vectors
from elt.data.modeldevi import classify, counts
from elt.sampling.select import adaptive_lo, cap_per_group, choose


def _clusters(seed=0):
    """Four tight clusters of near-duplicates (as frames of one trajectory are) in 5-D."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0, 0], [5, 0, 0, 0, 0], [0, 5, 0, 0, 0], [0, 0, 0, 5, 5]], float)
    sizes = [12, 3, 2, 5]
    x = np.concatenate([c + rng.normal(0, 0.05, (n, 5)) for c, n in zip(centers, sizes)])
    label = np.repeat(np.arange(4), sizes)
    return x, label


def test_fps_picks_one_frame_of_every_cluster_first():
    x, label = _clusters()
    idx = farthest_point_sampling(x, 4)
    assert sorted(label[idx]) == [0, 1, 2, 3]
    # random picks of 4 would mostly land in the big cluster; highest deviation picks duplicates
    devi = np.where(label == 0, 1.0, 0.1) + np.linspace(0, 0.01, len(x))
    assert set(label[choose(devi, 4, "highest", np.random.default_rng(0))]) == {0}
    picked = choose(devi, 4, "fps", np.random.default_rng(0), features=x)
    assert sorted(label[picked]) == [0, 1, 2, 3]
    assert int(np.argmax(devi)) in picked  # FPS starts from the highest deviation


def test_fps_spreads_picks_on_a_line_and_handles_duplicates():
    x = np.linspace(0, 1, 11)[:, None]
    assert list(farthest_point_sampling(x, 3)) == [0, 10, 5]
    dup = np.zeros((5, 3))
    idx = farthest_point_sampling(dup, 3)
    assert len(set(idx.tolist())) == 3
    assert list(farthest_point_sampling(x, 20)) == list(farthest_point_sampling(x, 11))
    assert len(farthest_point_sampling(x, 0)) == 0


def test_fps_standardises_features():
    # channel 0 spreads evenly over thousands; channel 1 singles out one frame by one unit. In raw
    # units the far end of channel 0 is the farthest frame; standardised, the outlier of channel 1 is
    x = np.column_stack([np.r_[np.linspace(0, 3000, 9), 1500], np.r_[np.zeros(9), 1.0]])
    assert list(farthest_point_sampling(x, 2)) == [0, 9]
    assert list(farthest_point_sampling(x, 2, standardize=False)) == [0, 8]


def test_frame_vector_averages_per_element():
    desc = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    v = frame_vector(desc, ["Cu", "Cu", "O"], ["Cu", "H", "O"])
    assert list(v) == [2.0, 3.0, 0.0, 0.0, 10.0, 20.0]


def test_deepmd_descriptors_are_invariant_and_tell_frames_apart(cu_pot64, cu_ensemble):
    frames = cu_ensemble[1]
    a = frames[0]
    d = cu_pot64.descriptors(a)
    assert d.shape == (len(a), 16 * 4) and np.isfinite(d).all()
    b = a.copy()
    b.positions += [0.3, -0.2, 0.1]
    b.wrap()
    np.testing.assert_allclose(cu_pot64.descriptors(b), d, atol=1e-8)
    perm = np.random.default_rng(0).permutation(len(a))
    np.testing.assert_allclose(cu_pot64.descriptors(a[perm]), d[perm], atol=1e-8)
    v = frame_vectors(cu_pot64, frames[:3])
    assert v.shape == (3, 64)
    assert frame_vectors(cu_pot64, []).shape[0] == 0  # a walker without candidates
    assert np.linalg.norm(v[0] - v[1]) > 1e-6


def test_adaptive_lo_gives_the_requested_number_of_candidates():
    rng = np.random.default_rng(3)
    devi = rng.uniform(0.0, 0.5, 200)
    hi = 0.3
    below = devi[devi < hi]
    lo, idx = adaptive_lo(below, candidates=15, hi=hi)
    assert len(idx) == 15 and lo == pytest.approx(np.sort(below)[-15])
    # classifying with that lo gives exactly those candidates
    c = classify(devi, lo, hi)
    assert counts(c)["candidate"] == 15
    assert set(np.flatnonzero(c == "candidate")) == set(np.flatnonzero(devi < hi)[idx])
    # a fraction of the frames below hi, and the larger of the two when both are given
    lo_f, idx_f = adaptive_lo(below, fraction=0.1, hi=hi)
    assert len(idx_f) == int(0.1 * len(below))
    assert len(adaptive_lo(below, candidates=2, fraction=0.1, hi=hi)[1]) == int(0.1 * len(below))
    # more requested than there are frames: all of them; none below hi: lo = hi
    assert len(adaptive_lo(below[:5], candidates=50, hi=hi)[1]) == 5
    assert adaptive_lo(np.array([]), candidates=5, hi=hi) == (hi, pytest.approx(np.zeros(0)))


def test_adaptive_lo_floor_keeps_accurate_frames_accurate():
    devi = np.array([0.001, 0.002, 0.003, 0.004, 0.2, 0.25])
    lo, idx = adaptive_lo(devi, candidates=4, lo_min=0.05, hi=0.3)
    assert lo == 0.05 and list(idx) == [4, 5]


def test_cap_per_group():
    groups = ["a", "a", "a", "b", "b", "c"]
    devi = np.array([0.1, 0.3, 0.2, 0.5, 0.4, 0.9])
    keep = cap_per_group(groups, devi, 1, "highest", np.random.default_rng(0))
    assert list(keep) == [1, 3, 5]
    assert list(cap_per_group(groups, devi, None, "highest", np.random.default_rng(0))) == list(range(6))
