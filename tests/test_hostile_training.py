"""Hostile inputs for training.run / evaluate / predict / serve: a malformed dataset, a bad preprocess.json,
an --out that is no folder, empty and overlong path arguments, a busy port. Each is one line and exit 2
before any work (or, for predict's paths, one error line for that path while the others are scored).

The hostile files are made here, never committed; each case has a time limit, so a hang fails its case.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.support.testkit import ROOT, free_port, image_bytes, picture, untrained_run
from processing.cliutil import UsageError, run_main

N = 6            # rows of a made dataset: two per split, one meme and one non-meme each
SIDE = 16
LONG_NAME = "c" * 300 + ".jpg"   # past NAME_MAX: every stat of it fails with ENAMETOOLONG


def make_h5(path: Path, attrs: dict | None = None, **over) -> Path:
    """A small dataset in processing.build_h5's layout; ``over`` replaces a member (``"GROUP"``: a group)."""
    members = {"images": np.zeros((N, SIDE, SIDE, 3), np.uint8), "labels": np.array([0, 1] * 3, np.uint8),
               "split": np.array([0, 0, 1, 1, 2, 2], np.uint8), **over}
    with h5py.File(path, "w") as f:
        for key, value in members.items():
            if isinstance(value, str) and value == "GROUP":
                f.create_group(key)
            else:
                f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    return path


# name -> (make_h5 arguments, the field the error must name)
BAD_DATASETS = {
    "flat_images": ({"images": np.zeros(N, np.uint8)}, "images is (6,) uint8"),
    "scalar_images": ({"images": np.uint8(3)}, "images is () uint8"),
    "gray_images": ({"images": np.zeros((N, SIDE, SIDE), np.uint8)}, "images is (6, 16, 16) uint8"),
    "rgba_images": ({"images": np.zeros((N, SIDE, SIDE, 4), np.uint8)}, "images is (6, 16, 16, 4) uint8"),
    "float_images": ({"images": np.zeros((N, SIDE, SIDE, 3), np.float32)}, "images is (6, 16, 16, 3) float32"),
    "empty_side": ({"images": np.zeros((N, 0, SIDE, 3), np.uint8)}, "images is (6, 0, 16, 3) uint8"),
    "images_group": ({"images": "GROUP"}, "images is a group"),
    "labels_long": ({"labels": np.array([0, 1] * 5, np.uint8)}, "labels is (10,) uint8"),
    "labels_short": ({"labels": np.array([0, 1], np.uint8)}, "labels is (2,) uint8"),
    "labels_2d": ({"labels": np.zeros((N, 2), np.uint8)}, "labels is (6, 2) uint8"),
    "labels_float": ({"labels": np.array([0, 1, np.nan] * 2)}, "labels is (6,) float64"),
    "labels_str": ({"labels": np.array([b"meme", b"non"] * 3)}, "labels is (6,) |S4"),
    "labels_group": ({"labels": "GROUP"}, "labels is a group"),
    "labels_5": ({"labels": np.array([0, 1, 5, 0, 1, 0], np.uint8)}, "labels holds 5 (row 2)"),
    "split_short": ({"split": np.array([0, 1, 2], np.uint8)}, "split is (3,) uint8"),
    "split_7": ({"split": np.array([0, 0, 1, 1, 2, 7], np.uint8)}, "split holds 7 (row 5)"),
    "split_negative": ({"split": np.array([0, 0, 1, 1, 2, -1], np.int8)}, "split holds -1 (row 5)"),
    "split_names_garbage": ({"attrs": {"split_names": "{not json"}}, "split_names attribute"),
    "split_names_ints": ({"attrs": {"split_names": json.dumps([1, 2, 3])}}, "split_names attribute"),
    "split_names_short": ({"attrs": {"split_names": json.dumps(["train"])}}, "split holds 1 (row 2)"),
    "fit_attribute": ({"attrs": {"fit": 42}}, "the fit attribute is 42"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_open_dataset_names_the_bad_field(case, tmp_path):
    from training.h5file import DatasetError, open_dataset

    over, says = BAD_DATASETS[case]
    path = make_h5(tmp_path / f"{case}.h5", **over)
    with pytest.raises(DatasetError) as info:
        open_dataset(path).close()
    message = str(info.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message
    assert "processing.build_h5" in message   # what to do


@pytest.mark.timeout(60)
def test_damage_anywhere_in_the_metadata_is_a_dataset_error(tmp_path):
    """300 bytes overwritten at every 50th offset of the file's metadata: open and read either work or raise
    DatasetError (h5py's KeyError of a damaged object header, its OSError, ValueError: all one message)."""
    from training.h5file import DatasetError, open_dataset, read_rows

    good = make_h5(tmp_path / "good.h5").read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for offset in range(0, len(good) - N * SIDE * SIDE * 3, 50):
        data = bytearray(good)
        data[offset:offset + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        path = tmp_path / f"damaged{offset}.h5"
        path.write_bytes(bytes(data))
        try:
            with open_dataset(path) as f:
                read_rows(f["images"], np.arange(N))
        except DatasetError as exc:
            refused += 1
            message = str(exc)     # "is damaged or not a dataset ...", or what the damage left: "lacks images, ..."
            assert message.startswith(f"{path} ") and "processing.build_h5" in message and "\n" not in message
    assert refused >= 10


@pytest.mark.timeout(30)
def test_open_dataset_takes_a_well_formed_file(tmp_path):
    from training.h5file import open_dataset, split_indices

    path = make_h5(tmp_path / "good.h5", attrs={"split_names": json.dumps(["train", "val", "test"])})
    with open_dataset(path) as f:
        assert f["images"].shape == (N, SIDE, SIDE, 3)
    idx, labels = split_indices(path, "val")
    assert idx.tolist() == [2, 3] and labels.tolist() == [0, 1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["labels_long", "split_short", "labels_5"])
def test_run_and_evaluate_refuse_a_malformed_dataset_before_any_work(case, tmp_path, capsys):
    """Lengths that disagree used to give evaluate wrong metrics and exit 0; now both refuse before the model."""
    from training import evaluate, run

    over, says = BAD_DATASETS[case]
    data = make_h5(tmp_path / f"{case}.h5", **over)
    commands = {"training.run": (run.main, ["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"]),
                "evaluate": (evaluate.main, [str(tmp_path / "no-model"), "--data", str(data)])}
    for prog, (main, argv) in commands.items():
        with pytest.raises(SystemExit) as info:
            run_main(prog, main, argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{prog}: error: {data}: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(30)
def test_run_refuses_images_a_model_cannot_declare(tmp_path):
    """A model's preprocess.json takes the dataset's image side, which must be one Preprocess.load accepts."""
    from training import run

    data = make_h5(tmp_path / "tiny.h5", images=np.zeros((N, 4, 4, 3), np.uint8))
    with pytest.raises(UsageError, match=r"images are 4x4; training takes square images from 16 to 1024"):
        run.main(["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1"])


GOOD_PRE = {"arch": "memenet", "fit": "letterbox", "label_names": ["non_meme", "meme"], "size": 128,
            "threshold": 0.5}

# name -> (the bytes of preprocess.json, what the error must say)
BAD_PREPROCESS = {
    **{f"size_{v}": ({"size": v}, f"size must be a whole number from 16 to 1024, got {json.dumps(v)}")
       for v in (200000, 0, -5, 128.7, "abc", True, 8)},
    "fit_unknown": ({"fit": "banana"}, 'fit must be one of letterbox, square, original, seed, got "banana"'),
    "fit_int": ({"fit": 3}, "fit must be one of"),
    **{f"threshold_{v}": ({"threshold": v}, f"threshold must be a number from 0 to 1, got {json.dumps(v)}")
       for v in (5, -0.1, "abc", None, False)},
    "arch_unknown": ({"arch": "resnet"}, 'arch must be one of memenet, original, lite0, seed, got "resnet"'),
    "label_names": ({"label_names": ["x"]}, 'label_names must be ["non_meme", "meme"]'),
    "threshold_nan": (json.dumps(GOOD_PRE).replace("0.5", "NaN").encode(), "threshold must be a number"),
    "list": (b"[1, 2, 3]", "it must hold a JSON object, got list"),
    "garbage": (b"{not json", "not JSON"),
    "empty": (b"", "not JSON"),
    "binary": (b"\xff\xfe\x00garbage\x80", "not JSON"),
    "deep": (b"[" * 100_000, "not JSON"),
    "too_large": (b" " * (2**20 + 1), "too_large"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD_PREPROCESS))
def test_preprocess_load_checks_every_field(case, tmp_path):
    from training.preprocess import Preprocess

    content, says = BAD_PREPROCESS[case]
    raw = content if isinstance(content, bytes) else json.dumps({**GOOD_PRE, **content}).encode()
    (tmp_path / "preprocess.json").write_bytes(raw)
    with pytest.raises(UsageError) as info:
        Preprocess.load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"retrain or fix {tmp_path / 'preprocess.json'}: ") and says in message, message
    assert "\n" not in message


@pytest.mark.timeout(30)
def test_preprocess_load_refuses_a_folder_or_fifo_and_defaults_only_when_absent(tmp_path):
    from training.preprocess import Preprocess

    assert Preprocess.load(tmp_path) == Preprocess()
    (tmp_path / "preprocess.json").write_text(json.dumps({**GOOD_PRE, "fit": "seed", "size": 96, "threshold": 1}))
    assert Preprocess.load(tmp_path) == Preprocess(fit="original", size=96, threshold=1.0)
    for kind, make in (("a folder", os.mkdir), ("a FIFO", os.mkfifo)):
        folder = tmp_path / kind.split()[-1]
        folder.mkdir()
        make(folder / "preprocess.json")
        with pytest.raises(UsageError, match=f"preprocess.json: it is {kind}, not a JSON file"):
            Preprocess.load(folder)


@pytest.mark.timeout(60)
def test_load_classifier_checks_preprocess_before_the_model(tmp_path):
    """A bad preprocess.json is named (not the model, nor a traceback later on the first image)."""
    from training.classifier import load_classifier

    (tmp_path / "model.keras").write_bytes(b"not a keras file")
    (tmp_path / "preprocess.json").write_text(json.dumps({**GOOD_PRE, "size": 200000}))
    with pytest.raises(UsageError, match="preprocess.json: size must be"):
        load_classifier(tmp_path)


@pytest.mark.timeout(30)
def test_evaluate_out_must_be_a_folder_checked_first(tmp_path, capsys):
    from training import evaluate

    afile = tmp_path / "afile"
    afile.write_text("x")
    images = tmp_path / "images"
    images.mkdir()
    cases = {afile: f"--out {afile} is a file, not a folder",
             Path("/dev/full"): "--out /dev/full is a character device, not a folder",
             afile / "sub": f"--out {afile / 'sub'} cannot be made: {afile} is a file, not a folder"}
    for out, says in cases.items():
        with pytest.raises(SystemExit) as info:   # the model does not exist: --out is checked before it
            run_main("evaluate", evaluate.main, [str(tmp_path / "no-model"), "--memes", str(images),
                                                 "--non-memes", str(images), "--out", str(out)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and err == f"evaluate: error: {says}: give a folder for report.json and the PNGs\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad, says", [("", "'' is an empty path"),
                                       ("missing", "is not found"),
                                       (LONG_NAME, "is unreadable (File name too long)")])
@pytest.mark.parametrize("option", ["--memes", "--non-memes"])
def test_evaluate_refuses_folder_arguments_that_are_no_folder(option, bad, says, tmp_path):
    from training import evaluate

    images = tmp_path / "images"
    images.mkdir()
    path = bad and str(tmp_path / bad)
    other = "--non-memes" if option == "--memes" else "--memes"
    with pytest.raises(UsageError) as info:   # the model does not exist: the folders are checked before it
        evaluate.main([str(tmp_path / "no-model"), option, path, other, str(images)])
    message = str(info.value)
    assert message.startswith(f"{option} ") and message.endswith(f"{says}: give a folder of images"), message


@pytest.mark.timeout(30)
def test_predict_expand_gives_empty_and_overlong_paths_a_reason(tmp_path):
    """``""`` would be the current folder and a 300-character name made ``is_dir`` raise; now each is one entry."""
    from processing.reasons import MISSING_FILE
    from training.predict import expand

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    long = tmp_path / LONG_NAME
    got = expand(["", str(long), str(tmp_path / "b.jpg"), str(tmp_path / "d")])
    assert got == [("", MISSING_FILE), (long, None), (tmp_path / "b.jpg", None), (tmp_path / "d" / "a.jpg", None)]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_predict_scores_the_others_and_refuses_a_bad_preprocess(tmp_path):
    model = untrained_run(tmp_path / "model")
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(image_bytes(picture(64, 48)))

    def predict(*args):
        r = subprocess.run([sys.executable, "-m", "training.predict", *map(str, args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=180, check=False)
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        return r

    r = predict(model, "", tmp_path / LONG_NAME, ok)
    lines = sorted(r.stdout.splitlines())
    assert r.returncode == 1 and len(lines) == 3, r.stdout
    assert lines[0] == "\terror\tmissing_file"
    assert lines[1] == f"{tmp_path / LONG_NAME}\terror\tunreadable"
    assert lines[2].startswith(f"{ok}\t")

    (model / "preprocess.json").write_text(json.dumps({**GOOD_PRE, "size": 200000}))
    r = predict(model, ok)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"training.predict: error: retrain or fix {model / 'preprocess.json'}: size must be a whole "
                        f"number from 16 to 1024, got 200000\n")


@pytest.mark.timeout(30)
def test_serve_refuses_a_busy_port_in_one_line_before_loading(tmp_path, capsys):
    from service import app

    (tmp_path / "model.keras").write_bytes(b"not a keras file")   # loaded, it would fail: the port comes first
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(SystemExit) as info:
            run_main("service", app.main, [str(tmp_path), "--host", "127.0.0.1", "--port", str(port)])
    assert info.value.code == 2
    assert capsys.readouterr().err == (f"service: error: port {port} on 127.0.0.1 is in use: "
                                       f"pick another with --port\n")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("module, argv", [("training.run", ["--data", "DATA", "--overwrite"]),
                                          ("training.evaluate", ["MODEL", "--data", "DATA"]),
                                          ("demo.chain", [])])
def test_an_empty_out_is_not_the_current_folder(module, argv, tmp_path, monkeypatch, capsys):
    """``--out ""`` was Path("."): run --overwrite and demo would have replaced the current folder."""
    import importlib

    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("x")
    data = make_h5(tmp_path / "good.h5")
    argv = [{"DATA": str(data), "MODEL": str(tmp_path / "no-model")}.get(a, a) for a in argv]
    with pytest.raises(SystemExit) as info:
        run_main(module, importlib.import_module(module).main, [*argv, "--out", ""])
    assert info.value.code == 2 and (tmp_path / "keep.txt").exists()
    err = capsys.readouterr().err
    assert err.endswith("argument --out: expected a folder, got an empty path (see --help)\n") and err.count("\n") == 1
