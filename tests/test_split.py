import random
from collections import Counter

import numpy as np

from processing.split import assign_splits


def test_stratified_proportions_and_determinism():
    labels = np.array([1] * 100 + [0] * 300)
    keys = [f"k{i}" for i in range(400)]
    s = assign_splits(labels, keys, (0.8, 0.1, 0.1), seed=3)
    for lab, n in ((1, 100), (0, 300)):
        c = Counter(s[labels == lab].tolist())
        assert c[0] == 0.8 * n and c[1] == 0.1 * n and c[2] == 0.1 * n
    assert np.array_equal(s, assign_splits(labels, keys, (0.8, 0.1, 0.1), seed=3))
    assert not np.array_equal(s, assign_splits(labels, keys, (0.8, 0.1, 0.1), seed=4))


def test_order_independent():
    labels = [i % 2 for i in range(200)]
    keys = [f"g{i % 37}" for i in range(200)]
    s = assign_splits(np.array(labels), keys, seed=1)
    order = list(range(200))
    random.Random(0).shuffle(order)
    s2 = assign_splits(np.array([labels[i] for i in order]), [keys[i] for i in order], seed=1)
    assert all(s2[j] == s[i] for j, i in enumerate(order))


def test_groups_never_straddle_splits():
    keys = [f"template{i % 20}" for i in range(1000)]
    s = assign_splits(np.ones(1000, int), keys, seed=0)
    by_key = {}
    for k, v in zip(keys, s.tolist()):
        by_key.setdefault(k, set()).add(v)
    assert all(len(v) == 1 for v in by_key.values())
    assert set(s.tolist()) == {0, 1, 2}
