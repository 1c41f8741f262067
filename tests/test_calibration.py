"""The validation-chosen threshold and the reliability binning, against plain references."""

import numpy as np
import pytest

from training.metrics import (balanced_accuracy, choose_threshold, expected_calibration_error, reliability_bins)


def reference_threshold(y, p):
    """Every candidate tried one by one with a plain loop."""
    values = sorted(set(p))
    candidates = {0.5} | {(a + b) / 2 for a, b in zip(values, values[1:])}
    def score(t):
        tp = sum(1 for yi, pi in zip(y, p) if yi == 1 and pi >= t)
        tn = sum(1 for yi, pi in zip(y, p) if yi == 0 and pi < t)
        return tp / y.count(1) + tn / y.count(0)
    best = max(score(t) for t in candidates)
    margin = 1 / min(y.count(0), y.count(1))
    return min((t for t in candidates if score(t) >= best - margin - 1e-12), key=lambda t: (abs(t - 0.5), t))


@pytest.mark.parametrize("seed", range(12))
def test_threshold_rule_matches_plain_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    p = np.round(rng.beta(2, 2, n) * 0.5 + 0.4 * y, 2)   # ties on purpose
    ours = choose_threshold(y, p)
    assert ours == pytest.approx(reference_threshold(y.tolist(), p.tolist()))


def test_threshold_rule_separable_and_degenerate_cases():
    # scores well below 0.5 but separable: the threshold moves down to the memes, stopping one meme short of
    # perfect (0.25 instead of 0.12) because one image of the 4 is within the margin and 0.25 is nearer 0.5
    assert choose_threshold([0] * 4 + [1] * 4, [0.01, 0.02, 0.03, 0.04, 0.2, 0.3, 0.35, 0.4]) == pytest.approx(0.25)
    assert choose_threshold([0] * 40 + [1] * 40, [0.01] * 40 + [0.2] * 40) == pytest.approx(0.105)
    # one outlier non-meme near 1 is not worth moving the threshold for (one image of margin)
    y = [0] * 10 + [1] * 10
    assert choose_threshold(y, [0.1] * 9 + [0.999] + [0.9] * 9 + [0.6]) == 0.5
    # 0.5 already separates: kept (tie goes to the default)
    assert choose_threshold([0, 1], [0.1, 0.9]) == 0.5
    assert choose_threshold([1, 1, 1], [0.1, 0.2, 0.3]) == 0.5   # one class: nothing to balance
    assert balanced_accuracy([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.2], 0.5) == 0.5


def test_reliability_bins_match_plain_reference():
    rng = np.random.default_rng(7)
    p = np.r_[rng.random(300), 0.0, 1.0, 0.1, 0.2]
    y = (rng.random(len(p)) < p).astype(int)
    bins = reliability_bins(y, p, bins=10)
    for k, b in enumerate(bins):
        members = [(yi, pi) for yi, pi in zip(y, p) if (k / 10 <= pi < (k + 1) / 10) or (k == 9 and pi == 1.0)]
        assert b["count"] == len(members) and (b["low"], b["high"]) == (k / 10, (k + 1) / 10)
        if members:
            assert b["mean_probability"] == pytest.approx(sum(pi for _, pi in members) / len(members))
            assert b["meme_fraction"] == pytest.approx(sum(yi for yi, _ in members) / len(members))
    ece = sum(len(m) * abs(np.mean([pi for _, pi in m]) - np.mean([yi for yi, _ in m]))
              for m in ([(yi, pi) for yi, pi in zip(y, p) if min(int(pi * 10), 9) == k] for k in range(10)) if m) / len(p)
    assert expected_calibration_error(bins) == pytest.approx(ece)
    assert sum(b["count"] for b in reliability_bins([1, 0], [0.5, 0.5], bins=4)) == 2
    assert reliability_bins([1], [0.9], bins=2)[0] == {"low": 0.0, "high": 0.5, "count": 0,
                                                       "mean_probability": None, "meme_fraction": None}
