import hashlib
import random
from collections import Counter, defaultdict

import numpy as np
import pytest

from processing.split import assign_splits as assign_by_id
from processing.split import rank_keys


def assign_splits(labels, keys, fractions=(0.8, 0.1, 0.1), seed=0):
    """The splits of rows keyed by strings, as the builder gets them (key ids into sorted names)."""
    names, ids = np.unique(np.asarray(keys), return_inverse=True)
    return assign_by_id(labels, ids, rank_keys(names.tolist(), len(names), seed), fractions)


def reference_assign(labels, keys, fractions, seed):
    """The rule in plain Python: per label, keys in seeded-hash order, each to the split holding its midpoint."""
    out = np.zeros(len(keys), dtype=np.uint8)
    bounds = np.cumsum(fractions)[:-1]
    rows = defaultdict(lambda: defaultdict(list))
    for i, (label, key) in enumerate(zip(labels, keys)):
        rows[label][key].append(i)
    for by_key in rows.values():
        total, done = sum(len(v) for v in by_key.values()), 0
        for key in sorted(by_key, key=lambda k: hashlib.sha256(f"{seed}\x00{k}".encode()).digest()):
            mid = (done + len(by_key[key]) / 2) / total
            out[by_key[key]] = int(np.searchsorted(bounds, mid, side="right"))
            done += len(by_key[key])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_assignment_equals_the_plain_rule(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 400)
    labels = [rng.randint(0, 2) for _ in range(n)]
    keys = [f"k{rng.randint(0, rng.randint(1, 300))}" for _ in range(n)]
    fractions = rng.choice([(0.8, 0.1, 0.1), (0.5, 0.5, 0.0), (0.0, 0.0, 1.0), (0.34, 0.33, 0.33)])
    assert assign_splits(np.array(labels), keys, fractions, seed).tolist() == \
        reference_assign(labels, keys, fractions, seed).tolist()


def test_no_rows():
    assert assign_by_id(np.zeros(0), np.zeros(0), rank_keys([], 0, 0)).shape == (0,)


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
