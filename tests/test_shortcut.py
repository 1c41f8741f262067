"""The file-metadata classifier (training.shortcut): naive Bayes against a plain reference, and a cue it must see."""

import io

import numpy as np
import pytest
from PIL import Image

from training.metrics import roc_auc
from training.shortcut import (BINS, FORMATS, file_metadata, metadata_log_odds, naive_bayes_log_odds,
                               quantile_codes)


def test_naive_bayes_log_odds_matches_a_loop_over_counts():
    rng = np.random.default_rng(0)
    train, labels, test = rng.integers(0, 3, (40, 2)), rng.integers(0, 2, 40), rng.integers(0, 3, (7, 2))
    got = naive_bayes_log_odds(train, labels, test, [3, 3])
    for row, value in zip(test, got):
        want = 0.0
        for j, code in enumerate(row):
            p = {}
            for cls in (0, 1):
                column = [r[j] for r, y in zip(train, labels) if y == cls]
                p[cls] = (column.count(code) + 1) / (len(column) + 3)
            want += np.log(p[1]) - np.log(p[0])
        assert value == pytest.approx(want)


def test_quantile_codes_are_deciles_of_the_training_values():
    train = np.arange(100.0)
    codes = quantile_codes(train, np.array([-5.0, 5.0, 15.0, 55.0, 1e9]))
    assert codes.tolist() == [0, 0, 1, 5, BINS - 1]


def test_a_format_cue_is_found_and_noise_is_not():
    rng = np.random.default_rng(1)
    n = 400
    labels = np.arange(n) % 2
    numeric = rng.normal(size=(n, 5))
    png, jpeg = FORMATS.index("PNG"), FORMATS.index("JPEG")
    cue = np.where(labels == 1, png, jpeg)                  # memes PNG, non-memes JPEG: the file names the label
    half = np.arange(n) < n // 2
    odds = metadata_log_odds(cue[half], numeric[half], labels[half], cue[~half], numeric[~half])
    assert roc_auc(labels[~half], odds) == 1.0
    none = np.full(n, jpeg)
    odds = metadata_log_odds(none[half], numeric[half], labels[half], none[~half], numeric[~half])
    assert abs(roc_auc(labels[~half], odds) - 0.5) < 0.12


def test_file_metadata_reads_the_header_and_size(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (40, 10), (1, 2, 3)).save(buf, "PNG")
    (tmp_path / "a.png").write_bytes(buf.getvalue())
    code, numeric = file_metadata(tmp_path / "a.png")
    assert code == FORMATS.index("PNG")
    assert numeric == pytest.approx([np.log(len(buf.getvalue())), np.log(40), np.log(10),
                                     len(buf.getvalue()) / 400, np.log(4)])
    (tmp_path / "junk.png").write_bytes(b"not a picture")
    assert file_metadata(tmp_path / "junk.png") is None and file_metadata(tmp_path / "gone.png") is None
