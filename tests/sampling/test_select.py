import numpy as np

from elt.data.modeldevi import ACCURATE, CANDIDATE, FAILED, classify, counts
from elt.sampling.select import choose


def test_trust_level_semantics_at_the_edges():
    f = np.array([0.0, 0.0499, 0.05, 0.1, 0.1999, 0.2, 5.0, np.nan])
    c = classify(f, 0.05, 0.2)
    assert list(c) == [ACCURATE, ACCURATE, CANDIDATE, CANDIDATE, CANDIDATE, FAILED, FAILED, FAILED]
    assert counts(c) == {ACCURATE: 2, CANDIDATE: 3, FAILED: 3}


def test_energy_criterion_combines():
    f = np.array([0.01, 0.01, 0.01, 0.1])
    e = np.array([0.001, 0.02, 0.5, 0.001])
    c = classify(f, 0.05, 0.2, e, 0.01, 0.1)
    assert list(c) == [ACCURATE, CANDIDATE, FAILED, CANDIDATE]


def test_choose_highest_and_random():
    d = np.array([0.1, 0.5, 0.3, 0.9, 0.2])
    assert list(choose(d, 2, "highest", np.random.default_rng(0))) == [1, 3]
    r1 = choose(d, 3, "random", np.random.default_rng(1))
    r2 = choose(d, 3, "random", np.random.default_rng(1))
    assert list(r1) == list(r2) and len(set(r1)) == 3
    assert list(choose(d, 10, "random", np.random.default_rng(0))) == [0, 1, 2, 3, 4]
    assert len(choose(d, 0, "random", np.random.default_rng(0))) == 0
