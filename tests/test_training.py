"""training.run / evaluate / predict end to end on a small generated dataset, plus the data stream."""

import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter

import h5py
import numpy as np
import pytest

from tests.support.testkit import ROOT, captioned_dataset, picture, save
from processing import build_h5
from processing.transform import tiny_to_input
from training.data import (H5Batches, class_weights, degrade, group_weights, is_repeated, read_rows,
                           smooth_upsample)
from training.metrics import binary_report, rates_by_group, roc_auc


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return captioned_dataset(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The same with 30 uncaptioned pictures of full size: non-memes the synthesis may draw on."""
    return captioned_dataset(tmp_path_factory.mktemp("mixed"), photos=30)


def cli(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "seed"
    r = cli("training.run", "--data", dataset, "--out", out, "--arch", "original", "--epochs", "8", "--batch-size", "8",
            "--lr", "3e-3", "--verbose", "0", "--degrade-memes", "0", "--smooth-tiny", "0", "--synth-nonmemes", "0",
            "--calibrate")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


@pytest.mark.slow
def test_run_writes_model_report_and_plots(trained):
    out, stdout = trained
    for name in ("model.keras", "checkpoint.keras", "log.csv", "report.json", "preprocess.json", "roc.png",
                 "confusion.png", "predictions.png", "learning_curves.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "count"):
        assert key in report
    assert report["count"] == 20 and report["memes"] == 8
    assert report["accuracy"] >= 0.9          # captions on noise vs blocky noise: easy
    assert "test: 20 images" in stdout and "ROC-AUC" in stdout
    by_source = {(r["group"], r["label"]): r for r in report["by_source"]}      # every test row in one source row
    assert sum(r["images"] for r in report["by_source"]) == sum(r["images"] for r in report["by_family"]) == 20
    assert sum(r["correct"] for r in report["by_source"]) == round(report["accuracy"] * 20)
    assert {label for _, label in by_source} == {"meme", "non_meme"} and "test by family" in stdout
    assert json.loads((out / "preprocess.json").read_text())["fit"] == "letterbox"
    with open(out / "log.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == list(range(report["epochs_run"]))


def damaged_copy(dataset, out, offset: int, count: int):
    """A copy of ``dataset`` with ``count`` bytes from ``offset`` inverted."""
    data = bytearray(dataset.read_bytes())
    data[offset:offset + count] = bytes(b ^ 0xFF for b in data[offset:offset + count])
    out.write_bytes(bytes(data))
    return out


@pytest.mark.slow
def test_a_damaged_dataset_is_one_line_for_run_and_evaluate(trained, dataset, tmp_path):
    """A damaged object header (h5py: KeyError) and a flipped byte inside image chunks (caught by the Fletcher-32
    checksum build_h5 writes) both end run and evaluate in one line naming the file, exit 2."""
    out, _ = trained
    with h5py.File(dataset) as f:
        assert f["images"].fletcher32
        header = h5py.h5o.get_info(f["labels"].id).addr
        chunks = [f["images"].id.get_chunk_info(i) for i in range(f["images"].id.get_num_chunks())]
    bad_header = damaged_copy(dataset, tmp_path / "header.h5", header, 200)
    bad_chunks = tmp_path / "chunks.h5"
    bad_chunks.write_bytes(dataset.read_bytes())
    for c in chunks:                        # one byte in the middle of every image: whatever the split read
        damaged_copy(bad_chunks, bad_chunks, c.byte_offset + c.size // 2, 1)
    for bad in (bad_header, bad_chunks):
        for module, args in (("training.run", ["--data", bad, "--out", tmp_path / f"run-{bad.stem}", "--arch",
                                               "original", "--epochs", "1", "--batch-size", "8"]),
                             ("training.evaluate", [out, "--data", bad])):
            r = cli(module, *args)
            assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
            last = r.stderr.strip().splitlines()[-1]
            assert last.startswith(f"{module}: error: {bad} is damaged or not a dataset from processing.build_h5"), last
            assert last.endswith("rebuild it with python -m processing.build_h5"), last


@pytest.mark.slow
def test_refuses_to_clobber_a_run_and_bad_data(trained, dataset, tmp_path):
    out, _ = trained
    r = cli("training.run", "--data", dataset, "--out", out)
    assert r.returncode == 2 and "already holds a run" in r.stderr.splitlines()[-1]
    r = cli("training.run", "--data", tmp_path / "none.h5", "--out", tmp_path / "r")
    assert r.returncode == 2 and r.stderr.strip() == (
        f"training.run: error: dataset not found: {tmp_path / 'none.h5'} (build one with python -m processing.build_h5)")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    for module, args in (("training.run", ["--data", bad, "--out", tmp_path / "r"]),
                         ("training.evaluate", [out, "--data", bad])):
        r = cli(module, *args)
        assert r.returncode == 2 and "is damaged or not a dataset from processing.build_h5" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    for flag, value, says in (("--synth-nonmemes", "1.5", "argument --synth-nonmemes: expected a number from 0 to 1"),
                              ("--synth-memes", "0.9", "--synth-memes takes"), ("--sizes", "12x", "--sizes takes"),
                              ("--sizes", "5000", "--sizes takes"), ("--epochs", "0", "argument --epochs")):
        r = cli("training.run", "--data", dataset, "--out", tmp_path / "r", flag, value)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.run", "--data", str(dataset), "--out", str(out), "--arch", "seed",
           "--epochs", "4", "--batch-size", "8", "--verbose", "0", "--patience", "10"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "state.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] < 3 and not (out / "report.json").exists()
    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {out} at epoch {state['epoch'] + 2}" in r.stderr
    with open(out / "log.csv") as fh:
        epochs = [int(row["epoch"]) for row in csv.DictReader(fh)]
    assert epochs[-1] == 3 and sorted(set(epochs)) == [0, 1, 2, 3]
    assert (out / "report.json").is_file()


@pytest.mark.slow
def test_predict_any_size_and_bad_files(trained, tmp_path):
    out, _ = trained
    save(picture(333, 517, seed=1), tmp_path / "imgs" / "odd.png")
    save(picture(1, 640, seed=2, caption=None), tmp_path / "imgs" / "line.png")
    save(picture(2000, 1500, seed=3), tmp_path / "imgs" / "big.jpg")
    (tmp_path / "imgs" / "fake.jpg").write_bytes(b"<html>nope</html>")
    r = cli("training.predict", out, tmp_path / "imgs", tmp_path / "missing.jpg")
    assert r.returncode == 1
    lines = dict(line.split("\t", 1) for line in r.stdout.strip().splitlines())
    assert lines[str(tmp_path / "imgs" / "fake.jpg")] == "error\tnot_an_image"
    assert lines[str(tmp_path / "missing.jpg")] == "error\tmissing_file"
    for name in ("odd.png", "line.png", "big.jpg"):
        prob, label = lines[str(tmp_path / "imgs" / name)].split("\t")
        assert 0 <= float(prob) <= 1 and label in ("meme", "non_meme")
    r = cli("training.predict", out, tmp_path / "imgs" / "odd.png", tmp_path / "imgs" / "big.jpg", "--json",
            "--native-size", "--max-side", "300", "--threshold", "0")
    assert r.returncode == 0
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["label"] for x in recs] == ["meme", "meme"] and all(0 <= x["meme_probability"] <= 1 for x in recs)


@pytest.mark.slow
def test_evaluate_split_and_folders(trained, dataset, tmp_path):
    out, _ = trained
    r = cli("training.evaluate", out, "--data", dataset, "--json")
    assert r.returncode == 0, r.stderr
    split_report = json.loads(r.stdout)
    run_report = json.loads((out / "report.json").read_text())
    for key in ("accuracy", "f1", "roc_auc", "confusion_matrix", "count", "by_source", "by_family"):
        assert split_report[key] == run_report[key]
    memes = dataset.parent / "memes"
    photos = tmp_path / "photos"
    for i in range(5):
        save(picture(300, 200, seed=50 + i, caption=None), photos / f"{i}.png")
    (photos / "broken.png").write_bytes(b"xx")
    r = cli("training.evaluate", out, "--memes", memes, "--non-memes", photos, "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["count"] == 45 and report["memes"] == 40 and report["skipped"] == {"not_an_image": 1}
    assert (tmp_path / "ev" / "roc.png").is_file() and report["input"] == "fit letterbox"
    r = cli("training.evaluate", out, "--non-memes", photos, "--native-size", "--max-side", "256", "--json")
    assert r.returncode == 0, r.stderr
    native = json.loads(r.stdout)
    assert native["count"] == 5 and native["input"] == "native size"


@pytest.mark.slow
def test_threshold_chosen_on_val_is_stored_and_read_back(trained, dataset, tmp_path):
    out, _ = trained
    stored = json.loads((out / "preprocess.json").read_text())["threshold"]
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == stored and report["threshold_rule"].startswith("max balanced accuracy on val")
    assert (out / "reliability.png").is_file() and len(report["reliability_bins"]) == 10
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.keras").write_bytes((out / "model.keras").read_bytes())
    pre = json.loads((out / "preprocess.json").read_text())
    meme = next((dataset.parent / "memes").rglob("*.jpg"))
    for threshold in (0.0, 1.0):   # the stored threshold answers exactly as the same one given by --threshold
        (copy / "preprocess.json").write_text(json.dumps({**pre, "threshold": threshold}))
        r = cli("training.predict", copy, meme, "--json")
        assert r.returncode == 0, r.stderr
        given = cli("training.predict", out, meme, "--json", "--threshold", threshold)
        assert json.loads(r.stdout)["label"] == json.loads(given.stdout)["label"]
        if not threshold:   # 0.0: everything is a meme, noise too (a non-meme at the trained threshold)
            noise = next((dataset.parent / "tiny").rglob("*.png"))
            labels = [json.loads(cli("training.predict", run, noise, "--json").stdout)["label"] for run in (copy, out)]
            assert labels == ["meme", "non_meme"]
        r = cli("training.evaluate", copy, "--data", dataset, "--json")
        assert r.returncode == 0, r.stderr
        ev = json.loads(r.stdout)
        given = json.loads(cli("training.evaluate", out, "--data", dataset, "--json", "--threshold", threshold).stdout)
        assert ev["threshold"] == given["threshold"] == threshold and ev["recall"] == given["recall"]
        assert threshold or ev["recall"] == 1.0
        r = cli("training.evaluate", copy, "--data", dataset, "--json", "--threshold", "0.5")
        assert json.loads(r.stdout)["threshold"] == 0.5


def test_read_rows_matches_fancy_indexing(dataset):
    with h5py.File(dataset) as f:
        idx = np.array([0, 1, 2, 5, 9, 10, 11, 40])
        assert np.array_equal(read_rows(f["images"], idx), f["images"][list(idx)])


def test_batches_are_deterministic_and_cover_the_split(dataset):
    a = H5Batches(dataset, "train", 8, shuffle=True, seed=3, augment=True, degrade_memes=0.5)
    b = H5Batches(dataset, "train", 8, shuffle=True, seed=3, augment=True, degrade_memes=0.5)
    for i in range(len(a)):
        xa, ya = a[len(a) - 1 - i][:2]
        xb, yb = b[len(a) - 1 - i][:2]
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    plain = H5Batches(dataset, "train", 8)
    assert sum(len(plain[i][1]) for i in range(len(plain))) == len(plain.indices) == 60
    first = a._order.copy()
    a.on_epoch_end()
    assert not np.array_equal(first, a._order) and sorted(first) == sorted(a._order)
    multi = H5Batches(dataset, "train", 8, sizes=(96, 160))
    assert multi[0][0].shape[1:] == (96, 96, 3)
    multi.on_epoch_end()
    assert multi[0][0].shape[1:] == (160, 160, 3)


def test_degrade_is_the_cifar_path_and_smoothing_removes_blocks():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    d = degrade(img)
    assert is_repeated(d) and not is_repeated(img)
    tiny = tiny_to_input(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert is_repeated(tiny) and not is_repeated(smooth_upsample(tiny))
    assert class_weights(np.array([0, 0, 0, 1])) == {0: 4 / 6, 1: 2.0}


def test_sources_that_are_not_text_are_a_damaged_dataset(dataset, tmp_path):
    import shutil

    from training.h5file import DatasetError, read_sources

    copy = tmp_path / "d.h5"
    shutil.copyfile(dataset, copy)
    assert read_sources(copy, np.array([0, 1])) == read_sources(dataset, np.array([0, 1]))
    with h5py.File(copy, "r+") as f:
        f["source"][0] = b"\xff\xfe"
    with pytest.raises(DatasetError, match="is damaged or not a dataset from processing.build_h5"):
        read_sources(copy, np.array([0, 1]))


def test_group_weights_against_a_plain_reference():
    rng = np.random.default_rng(4)
    groups = rng.choice(["a", "b", "b", "c", "c", "c", "c"], 400).tolist()
    labels = rng.integers(0, 2, 400)
    assert np.allclose(group_weights(groups, labels, 0.0), 1.0)
    for power in (0.5, 1.0):
        w = group_weights(groups, labels, power)
        for y in (0, 1):
            mine = labels == y
            n = Counter(g for g, m in zip(groups, mine) if m)
            raw = np.array([n[g] ** -power for g, m in zip(groups, mine) if m])
            assert np.allclose(w[mine], raw / raw.mean())        # mean 1 within each label
    w = group_weights(groups, labels, 1.0)
    totals = {(y, g): w[(labels == y) & (np.array(groups) == g)].sum() for y in (0, 1) for g in "abc"}
    assert np.allclose([totals[0, g] for g in "abc"], totals[0, "a"])     # power 1: every group of a label alike


def test_balance_families_weighs_each_family_of_a_label_alike(mixed, tmp_path):
    """Non-memes of two families (36 tiny, 18 photos in train): with power 1 each family's rows weigh the same in
    all, and the class weights still balance the labels."""
    from training.h5file import DatasetError, read_sources
    from training.realdata import family_of_source

    plain = H5Batches(mixed, "train", 16, balance_classes=True)
    even = H5Batches(mixed, "train", 16, balance_classes=True, balance_families=1.0)
    families = [family_of_source(s) for s in read_sources(mixed, even.indices)]
    totals, by_label = Counter(), Counter()
    for i in range(len(even)):
        _, y, w = even[i]
        rows = np.sort(even._order[i * 16:(i + 1) * 16])
        for family, label, weight in zip([families[r] for r in rows], y, w):
            totals[label, family] += float(weight)
            by_label[label] += float(weight)
    assert np.isclose(totals[0, "tiny"], totals[0, "photos"]) and totals[0, "tiny"] > 0
    plain_by_label = Counter()
    for i in range(len(plain)):
        _, y, w = plain[i]
        for label, weight in zip(y, w):
            plain_by_label[label] += float(weight)
    assert np.allclose([by_label[0], by_label[1]], [plain_by_label[0], plain_by_label[1]])
    bare = tmp_path / "no-source.h5"
    with h5py.File(mixed, "r") as src, h5py.File(bare, "w") as f:
        for name in src:
            if name != "source":
                src.copy(src[name], f, name)
        f.attrs.update(src.attrs)
    with pytest.raises(DatasetError, match="no source column"):
        H5Batches(bare, "train", 16, balance_families=1.0)


def test_rates_by_group_against_a_plain_count():
    rng = np.random.default_rng(2)
    groups = rng.choice(["a", "b", "c"], 300)
    y = rng.integers(0, 2, 300)
    p = rng.random(300)
    rows = rates_by_group(groups, y, p, 0.4)
    for r in rows:
        label = 1 if r["label"] == "meme" else 0
        mine = [(pi >= 0.4) == bool(label) for g, yi, pi in zip(groups, y, p) if g == r["group"] and yi == label]
        assert (r["images"], r["correct"]) == (len(mine), sum(mine)) and r["rate"] == pytest.approx(sum(mine) / len(mine))
    assert sum(r["images"] for r in rows) == 300 and [r["group"] for r in rows] == sorted(r["group"] for r in rows)
    assert rates_by_group(["x", "x"], [1, 1], [0.9, 0.1], 0.5) == [
        {"group": "x", "label": "meme", "images": 2, "correct": 1, "rate": 0.5}]


def test_metrics_against_brute_force():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(y, s) == pytest.approx(brute)
    r = binary_report([1, 1, 0, 0, 1], [0.9, 0.4, 0.6, 0.1, 0.8])
    assert r["confusion_matrix"]["rows_true_cols_pred"] == [[1, 1], [1, 2]]
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(0.6) and r["roc_auc"] == pytest.approx(5 / 6)


@pytest.mark.slow
def test_same_seed_same_model_on_cpu(dataset, tmp_path):
    import keras

    import training.optim  # noqa: F401  (registers the optimizer and the loss for loading)
    import training.spp  # noqa: F401  (registers the layer for loading)

    for name in ("a", "b"):
        r = cli("training.run", "--data", dataset, "--out", tmp_path / name, "--arch", "original", "--epochs", "2",
                "--batch-size", "8", "--seed", "7", "--verbose", "0")
        assert r.returncode == 0, r.stderr[-2000:]
    wa = keras.saving.load_model(tmp_path / "a" / "checkpoint.keras").get_weights()
    wb = keras.saving.load_model(tmp_path / "b" / "checkpoint.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


def test_synthesised_memes_are_paired_with_their_uncaptioned_picture(mixed):
    dataset = mixed
    plain = H5Batches(dataset, "train", 16, shuffle=True, seed=3)
    synth = H5Batches(dataset, "train", 16, shuffle=True, seed=3, synth_memes=0.5)
    again = H5Batches(dataset, "train", 16, shuffle=True, seed=3, synth_memes=0.5)
    made = 0
    for i in range(len(plain)):
        (x0, y0), (x1, y1), (x2, y2) = plain[i], synth[i], again[i]
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)            # deterministic per (seed, epoch, batch)
        turned = np.flatnonzero(y1 != y0)
        assert (y0[turned] == 0).all() and (y1[turned] == 1).all()
        assert len(turned) <= (y0 == 0).sum() // 2
        kept = np.setdiff1d(np.arange(len(y0)), turned)
        assert np.array_equal(x1[kept], x0[kept])                          # partners stay as they were
        made += len(turned)
    assert made > 0
    assert class_weights(np.array([0, 0, 0, 1]), 0.5) == {0: 4 / 3, 1: 4 / 5}


def test_synthesised_text_nonmemes_stay_nonmemes(mixed):
    dataset = mixed
    plain = H5Batches(dataset, "train", 16, shuffle=True, seed=3)
    both = H5Batches(dataset, "train", 16, shuffle=True, seed=3, synth_memes=0.3, synth_nonmemes=0.3)
    again = H5Batches(dataset, "train", 16, shuffle=True, seed=3, synth_memes=0.3, synth_nonmemes=0.3)
    redrawn = 0
    for i in range(len(plain)):
        (x0, y0), (x1, y1), (x2, y2) = plain[i], both[i], again[i]
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
        changed = np.flatnonzero([not np.array_equal(a, b) for a, b in zip(x0, x1)])
        assert (y0[changed] == 0).all()                                    # only non-memes are ever redrawn
        assert (y0[y0 == 1] == y1[y0 == 1]).all()                           # real memes stay memes
        redrawn += int(((y1 == 0) & np.isin(np.arange(len(y1)), changed)).sum())
        captioned = int(((y0 == 0) & (y1 == 1)).sum())
        untouched = int(((y0 == 0) & (y1 == 0) & ~np.isin(np.arange(len(y1)), changed)).sum())
        assert untouched >= captioned                                      # every captioned one kept its partner
    assert redrawn > 0                                                     # some redrawn pictures kept label 0


def test_the_synthesis_never_draws_on_32px_pictures(mixed):
    """A caption or a design on a 32-px picture (a blur at 128 px) would teach that a blur is a meme: the plan
    captions and redraws only full-size non-memes, though a 32-px one may give its slot."""
    from training.data import small_sources

    assert small_sources(["tiny:t/cat", "cifar100", "folder:memes/x", "loc_archive"]).tolist() == [
        True, True, False, False]
    ds = H5Batches(mixed, "train", 32, shuffle=True, seed=1, synth_memes=0.5, synth_nonmemes=0.3)
    assert ds.small_rows.any() and (~ds.small_rows & (ds.labels == 0)).any()
    drawn = 0
    for i in range(len(ds)):
        pos = np.sort(ds._order[i * 32:(i + 1) * 32])
        small = ds.small_rows[pos]
        captions, texts = ds._plan(ds.labels[pos], small, np.random.default_rng([1, 0, i]))
        assert not small[list(captions.values())].any() and not small[list(texts)].any()
        drawn += len(captions) + len(texts)
    assert drawn > 0


def test_the_stream_hands_its_styles_and_scripts_to_the_synthesis(mixed, monkeypatch):
    import training.data as data

    calls = []
    real_caption, real_text = data.caption_meme, data.text_nonmeme
    monkeypatch.setattr(data, "caption_meme", lambda *a, **k: calls.append(("caption", k)) or real_caption(*a, **k))
    monkeypatch.setattr(data, "text_nonmeme", lambda *a, **k: calls.append(("text", k)) or real_text(*a, **k))
    ds = H5Batches(mixed, "train", 32, shuffle=True, seed=1, synth_memes=0.1, synth_nonmemes=0.5,
                   synth_styles=("subtitle",), synth_scripts=("latin", "ja"))
    for i in range(len(ds)):
        ds[i]
    assert {kind for kind, _ in calls} == {"caption", "text"}
    assert all(k["scripts"] == ("latin", "ja") for _, k in calls)
    assert all(k["styles"] == ("subtitle",) for kind, k in calls if kind == "caption")


def test_validation_stream_synthesises_the_same_every_epoch(mixed):
    dataset = mixed
    val = H5Batches(dataset, "val", 8, seed=2, synth_memes=0.5, synth_nonmemes=0.3, same_every_epoch=True)
    first = [val[i] for i in range(len(val))]
    val.on_epoch_end()
    again = [val[i] for i in range(len(val))]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    plain = H5Batches(dataset, "val", 8)
    assert sum(int((b[1] != p[1]).sum()) for b, p in zip(first, (plain[i] for i in range(len(plain))))) > 0
    train = H5Batches(dataset, "train", 8, seed=2, synth_memes=0.5)
    before = train[0]
    train.on_epoch_end()
    assert not np.array_equal(before[0], train[0][0])            # training draws afresh each epoch


@pytest.mark.slow
def test_lite0_fine_tunes_in_two_phases_resumes_between_them_and_predicts_at_any_size(dataset, tmp_path):
    """Head-only warm-up, then the whole model at a tenth of the rate; a run killed after the warm-up resumes
    into the second phase; the model predicts and evaluates at 128 px and at native size (32 px and up)."""
    out = tmp_path / "lite0"
    cmd = [sys.executable, "-m", "training.run", "--data", str(dataset), "--out", str(out), "--arch", "lite0",
           "--epochs", "3", "--batch-size", "8", "--verbose", "0", "--patience", "10", "--sizes", "64",
           "--warmup-epochs", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "state.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    _, first = proc.communicate()
    assert "epochs 1-1: head only at lr 0.001" in first
    assert json.loads((out / "state.json").read_text())["epoch"] == 0
    r = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epochs 2-3: whole model at lr 0.0001" in r.stderr and "head only" not in r.stderr
    with open(out / "log.csv") as fh:
        assert [int(row["epoch"]) for row in csv.DictReader(fh)] == [0, 1, 2]
    assert json.loads((out / "preprocess.json").read_text())["arch"] == "lite0"
    assert json.loads((out / "report.json").read_text())["accuracy"] >= 0.8
    save(picture(32, 32, seed=7, caption=None), tmp_path / "imgs" / "small.png")
    save(picture(500, 333, seed=8), tmp_path / "imgs" / "wide.jpg")
    for flags in ([], ["--native-size"]):
        r = cli("training.predict", out, tmp_path / "imgs", "--json", *flags)
        assert r.returncode == 0, r.stderr[-2000:]
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(recs) == 2 and all(0 <= x["meme_probability"] <= 1 for x in recs)
    r = cli("training.evaluate", out, "--non-memes", tmp_path / "imgs", "--native-size", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["count"] == 2, r.stderr[-2000:]


def test_small_crop_stays_inside_the_letterbox_bands():
    from processing.neardup import content_bounds
    from processing.transform import LETTERBOX_FILL, fit_image
    from training.data import small_crop

    wide = np.random.default_rng(0).integers(0, 120, (60, 200, 3)).astype(np.uint8)   # never the fill colour
    square = fit_image(wide, "letterbox", 128)
    bands = content_bounds(square[None])[0]
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = small_crop(square.copy(), rng, "letterbox")
        assert out.shape == square.shape and out.dtype == np.uint8
        top, bottom, left, right = content_bounds(out[None])[0]
        assert (left, right) == (0, 128) and abs(int(bottom - top) - int(bands[1] - bands[0])) <= 8
        assert (out[:top] == LETTERBOX_FILL).all() and (out[bottom:] == LETTERBOX_FILL).all()
    full = np.random.default_rng(2).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    assert not np.array_equal(small_crop(full.copy(), np.random.default_rng(3), "letterbox", keep=0.5), full)


@pytest.mark.slow   # a Python with TensorFlow or JAX per backend
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_scaled_optimizer_steps_named_variables_at_their_multiple(backend):
    """One Adam step moves every variable by about the rate (sign of its gradient); the scaled ones by
    path_scale x the rate. Checked on both backends (TensorFlow hands the optimizer its own variables)."""
    code = """
import json, keras, numpy as np
from training.optim import make_optimizer
inp = keras.Input((3,))
out = keras.layers.Dense(1, name="head")(keras.layers.Dense(2, name="trunk")(inp))
m = keras.Model(inp, out)
before = [v.numpy().copy() for v in m.trainable_variables]
opt = make_optimizer("adam", 0.01, [v.path for v in m.trainable_variables if v.path.startswith("head/")], 10.0)
m.compile(optimizer=opt, loss="mse")
m.train_on_batch(np.ones((4, 3), "float32"), np.full((4, 1), 100.0, "float32"))
steps = {v.path: float(np.abs(v.numpy() - b).max()) for v, b in zip(m.trainable_variables, before)}
clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
print(json.dumps([steps, sorted(clone.scaled_paths), clone.path_scale]))
"""
    import os
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "KERAS_BACKEND": backend})
    assert r.returncode == 0, r.stderr[-2000:]
    steps, paths, scale = json.loads(r.stdout.splitlines()[-1])
    assert paths == ["head/bias", "head/kernel"] and scale == 10.0
    for path, step in steps.items():
        assert step == pytest.approx(0.1 if path.startswith("head/") else 0.01, rel=1e-3), (path, steps)


def test_smoothed_sparse_crossentropy_matches_a_plain_reference(tmp_path):
    import keras

    from training.optim import SmoothedSparseCrossentropy, make_loss

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], 16).astype("float32")
    labels = rng.integers(0, 2, 16)
    for s in (0.0, 0.1, 0.3):
        target = np.eye(2)[labels] * (1 - s) + s / 2
        reference = -(target * np.log(np.clip(probs, 1e-7, 1))).sum(axis=1).mean()
        got = float(SmoothedSparseCrossentropy(s)(labels, probs))
        assert got == pytest.approx(reference, rel=1e-5), s
    plain = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    assert float(SmoothedSparseCrossentropy(0.0)(labels, probs)) == pytest.approx(float(plain), rel=1e-5)
    assert make_loss(0.0) == "sparse_categorical_crossentropy"

    inp = keras.Input((3,))                    # a model compiled with it saves and loads back (--resume)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(inp))
    model.compile(optimizer="adam", loss=make_loss(0.2))
    model.fit(np.ones((8, 3), "float32"), labels[:8], verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss.smoothing == pytest.approx(0.2)


@pytest.mark.slow   # fits two small models
def test_train_bn_trains_the_trunks_batch_norm_statistics():
    import keras

    from training.model import set_trunk_training

    def trunk_and_model():
        inp = keras.Input((4,))
        trunk = keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(4)(inp)), name="trunk")
        x = keras.Input((4,))
        return trunk, keras.Model(x, keras.layers.Dense(2, activation="softmax")(trunk(x)))

    x = np.random.default_rng(0).normal(5.0, 1.0, (32, 4)).astype("float32")
    y = (np.arange(32) % 2).astype("int32")
    moved = {}
    for train_bn in (False, True):
        keras.utils.set_random_seed(0)
        trunk, model = trunk_and_model()
        set_trunk_training(trunk, True, train_bn)
        bn = trunk.layers[-1]
        assert bn.trainable is train_bn and trunk.layers[1].trainable
        before = bn.moving_mean.numpy().copy()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        moved[train_bn] = float(np.abs(bn.moving_mean.numpy() - before).max())
    assert moved[False] == 0 and moved[True] > 0.01
    set_trunk_training(trunk, False, True)         # a frozen trunk keeps its batch norm frozen whatever train_bn
    assert not bn.trainable


def test_reencode_shrinks_and_recompresses_both_labels_alike(dataset):
    from training.data import reencode

    ramp = np.linspace(0, 255, 128)
    image = np.stack([ramp[None, :].repeat(128, 0), ramp[:, None].repeat(128, 1), np.full((128, 128), 90.0)],
                     axis=2).astype(np.uint8)
    image[40:60, 30:100] = 255                                    # a white bar: an edge for the blur to soften
    out = reencode(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    mse = np.mean((out.astype(float) - image) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 15                    # the same picture, only softer and blockier
    assert np.array_equal(out, reencode(image, np.random.default_rng(0)))      # seeded
    plain = H5Batches(dataset, "train", 64, seed=3)
    every = H5Batches(dataset, "train", 64, seed=3, reencode=1.0)
    (x0, y0), (x1, y1) = plain[0][:2], every[0][:2]
    assert np.array_equal(y0, y1) and set(y0.tolist()) == {0, 1}
    assert all(not np.array_equal(a, b) for a, b in zip(x0, x1))   # every picture, meme or not


def test_degrade_all_blurs_both_labels_the_way_32px_pictures_arrive(dataset):
    from training.data import degrade_smooth

    rng = np.random.default_rng(4)
    tiny = tiny_to_input(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    assert np.array_equal(degrade_smooth(tiny), smooth_upsample(tiny))   # a 32-px picture: exactly its smoothing
    plain = H5Batches(dataset, "train", 64, seed=3)
    every = H5Batches(dataset, "train", 64, seed=3, degrade_all=1.0)
    (x0, y0), (x1, y1) = plain[0][:2], every[0][:2]
    assert np.array_equal(y0, y1) and set(y0.tolist()) == {0, 1}
    assert all(np.array_equal(degrade_smooth(a), b) for a, b in zip(x0, x1))   # every picture, meme or not
    assert sum(np.array_equal(a, b) for a, b in zip(x0, x1)) < len(x0) // 4


def test_no_crop_keeps_flips_only(dataset):
    crop = H5Batches(dataset, "train", 8, shuffle=True, seed=3, augment=True, crop=True)
    flips = H5Batches(dataset, "train", 8, shuffle=True, seed=3, augment=True, crop=False)
    plain = H5Batches(dataset, "train", 8, shuffle=True, seed=3)
    x0, x1, x2 = plain[0][0], flips[0][0], crop[0][0]
    for a, b in zip(x0, x1):                 # each picture as it is or mirrored, nothing else
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    assert any(not (np.array_equal(a, c) or np.array_equal(a[:, ::-1], c)) for a, c in zip(x0, x2))


@pytest.mark.slow
def test_the_defaults_are_the_plain_fine_tune(dataset, tmp_path):
    """The cross-validation's winner by default: no warm-up, the head at 10x the trunk's rate (AdamW), a one-level
    SPP head (global pooling), no synthesis or degradation, threshold 0.5."""
    out = tmp_path / "plain"
    r = cli("training.run", "--data", dataset, "--out", out, "--arch", "lite0", "--epochs", "1", "--batch-size", "8",
            "--verbose", "0", "--sizes", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epochs 1-1: whole model at lr 0.0001" in r.stderr
    assert json.loads((out / "preprocess.json").read_text())["threshold"] == 0.5
    used = json.loads((out / "args.json").read_text())
    assert (used["synth_memes"], used["synth_nonmemes"], used["degrade_memes"], used["smooth_tiny"], used["crop"],
            used["optimizer"], used["train_bn"], used["label_smoothing"], used["reencode"], used["degrade_all"]) == \
        (0, 0, 0, 1, False, "adamw", False, 0, 0, 0)
    import keras
    from training.classifier import load_classifier
    model, _ = load_classifier(out)
    spp = next(layer for layer in model.layers if "pyramid" in layer.name)
    assert list(spp.get_config()["levels"]) == [1]
    opt = model.optimizer
    assert type(opt).__name__ == "ScaledAdamW" and opt.path_scale == pytest.approx(10.0)
    assert "probabilities/kernel" in opt.scaled_paths and "stem_conv/kernel" not in opt.scaled_paths
    keras.backend.clear_session()
    r = cli("training.run", "--data", dataset, "--out", tmp_path / "x", "--spp-levels", "1,1")
    assert r.returncode == 2 and "distinct values such as 1,2,4" in r.stderr


@pytest.mark.slow
def test_side_of_the_dataset_is_the_side_of_the_model(dataset, tmp_path):
    """build_h5 --side 64: 64-px tensors (attribute too), training at 64, preprocess.json 64, predict and the
    service take it from there; evaluate refuses a dataset of another side in one line."""
    src = tmp_path / "src"
    for i in range(12):
        save(picture(150, 120, seed=i, caption="TOP TEXT"), src / "memes" / f"{i}.jpg")
        save(picture(130, 170, seed=100 + i, caption=None), src / "photos" / f"{i}.jpg")
    for i in range(8):
        save(picture(32, 32, seed=200 + i, caption=None), src / "tiny" / f"{i}.png")
    data = tmp_path / "d64.h5"
    assert build_h5.main(["--memes", str(src / "memes"), "--non-memes", str(src / "photos"), "--tiny",
                          str(src / "tiny"), "--side", "64", "--split", "0.6,0.2,0.2", "--out", str(data),
                          "--no-progress", "--workers", "1"]) == 0
    with h5py.File(data) as f:
        assert f["images"].shape[1:] == (64, 64, 3) and json.loads(f.attrs["params"])["size"] == 64
        tiny = [i for i, s in enumerate(f["source"][:]) if s.startswith(b"tiny:")]
        assert is_repeated(f["images"][tiny[0]], 2)          # 32 px reach 64 by a whole factor
    out = tmp_path / "run64"
    r = cli("training.run", "--data", data, "--out", out, "--arch", "original", "--epochs", "1", "--batch-size", "8",
            "--verbose", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "preprocess.json").read_text())["size"] == 64
    r = cli("training.predict", out, src / "memes" / "0.jpg", "--json")
    assert r.returncode == 0 and 0 <= json.loads(r.stdout)["meme_probability"] <= 1, r.stderr[-2000:]
    r = cli("training.evaluate", out, "--data", dataset)
    assert r.returncode == 2 and "holds 128-px images but the model takes 64 px" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    from fastapi.testclient import TestClient
    from service.app import Settings, create_app, load_service
    with TestClient(create_app(load_service(out, Settings()))) as client:
        contract = client.get("/v1/model").json()
        with open(src / "memes" / "0.jpg", "rb") as fh:
            answer = client.post("/v1/predict", files={"files": ("0.jpg", fh, "image/jpeg")})
    assert contract["input"]["size"] == 64 and contract["input"]["shape"] == [None, 64, 64, 3]
    assert answer.status_code == 200, answer.text
    for bad in ("100", "48"):
        with pytest.raises(Exception, match="--side takes a multiple of 32"):
            build_h5.main(["--memes", str(src / "memes"), "--side", bad, "--out", str(tmp_path / "x.h5")])
