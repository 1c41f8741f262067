"""Hostile inputs for build_h5, predict, evaluate and run: every input ends in one record, nothing hangs.

The files are made here (``make_*``), never committed. Each case has a time
limit, so a hang (a FIFO, a symlink loop) fails its case, not the suite.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import ROOT, gif_bytes, image_bytes, picture
from processing import build_h5
from processing.cliutil import run_main

ROW = "row"
NON_UTF8 = os.fsdecode(b"caf\xe9.jpg")          # Latin-1 'café': not UTF-8
NON_UTF8_DIR = os.fsdecode(b"d\xffir")


# ---- the generator of hostile inputs ------------------------------------------------------------------------
# (new code is imported inside the tests that need it, so that this file runs against older code too and shows
# which cases fail there)

def escaped(raw: bytes | str) -> str:
    """Reference for ``processing.files.escape_name`` on file names: backslash doubled, non-UTF-8 bytes and
    control characters as ``\\xNN``."""
    raw = os.fsencode(raw)
    text = raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c == "\x7f" else c for c in text)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def jpeg(seed=0, w=200, h=200) -> bytes:
    return image_bytes(picture(w, h, seed=seed), "JPEG")


def png(img: Image.Image, **kw) -> bytes:
    return image_bytes(img, "PNG", **kw)


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` and holds no pixel data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def make_socket(path: Path) -> None:
    """A UNIX socket at ``path`` (bound in a short folder, then moved: socket paths are limited to ~100 bytes)."""
    short = Path(tempfile.mkdtemp(prefix="s", dir="/tmp"))
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(short / "s"))
        os.rename(short / "s", path)
    finally:
        shutil.rmtree(short)


def odd_modes(d: Path) -> dict:
    rgb = picture(200, 200, seed=3)
    write(d / "cmyk.jpg", image_bytes(rgb.convert("CMYK"), "JPEG"))
    i16 = Image.fromarray(np.arange(200 * 200, dtype="<u2").reshape(200, 200) * 3)
    assert i16.mode == "I;16"
    write(d / "i16.png", png(i16))
    write(d / "p_transparent.png", png(rgb.convert("P"), transparency=0))
    write(d / "la.png", png(rgb.convert("LA")))
    return {"cmyk.jpg": ROW, "i16.png": ROW, "p_transparent.png": ROW, "la.png": ROW}


def non_utf8_names(d: Path) -> dict:
    write(d / NON_UTF8, jpeg(4))
    write(d / NON_UTF8_DIR / "x.jpg", jpeg(5))
    write(d / "new\nline\\.jpg", jpeg(6))
    return {"caf\\xe9.jpg": ROW, "d\\xffir/x.jpg": ROW, "new\\x0aline\\\\.jpg": ROW}


def one_loop(d: Path) -> dict:
    write(d / "sub" / "x.jpg", jpeg(7))
    (d / "sub" / "up").symlink_to("..")
    (d / "sub" / "self").symlink_to(".")
    return {"sub/x.jpg": ROW}


def two_loops(d: Path) -> dict:
    write(d / "b" / "2.jpg", jpeg(8))
    write(d / "c" / "3.jpg", jpeg(9))
    (d / "a_to_c").symlink_to("c")            # sorts before the real c: the real place must win
    (d / "b" / "to_c").symlink_to("../c")
    (d / "c" / "to_b").symlink_to("../b")
    return {"b/2.jpg": ROW, "c/3.jpg": ROW}


def special_files(d: Path) -> dict:
    os.mkfifo(d / "pipe.jpg")
    (d / "null.jpg").symlink_to("/dev/null")   # a character device (never /dev/zero: main read it without end)
    make_socket(d / "sock.jpg")
    (d / "dangling.jpg").symlink_to("nowhere.jpg")
    (d / "selfloop.jpg").symlink_to("selfloop.jpg")
    return {"pipe.jpg": "not_a_file", "null.jpg": "not_a_file", "sock.jpg": "not_a_file",
            "dangling.jpg": "missing_file", "selfloop.jpg": "unreadable"}


def broken_files(d: Path) -> dict:
    write(d / "zero.jpg", b"")
    write(d / "fake.jpg", b"just some text, named like a picture\n")
    full = jpeg(10, 400, 400)
    write(d / "truncated.jpg", full[: len(full) // 2])
    write(d / "bomb.png", png_header(100_000, 100_000))
    return {"zero.jpg": "not_an_image", "fake.jpg": "not_an_image", "truncated.jpg": "truncated",
            "bomb.png": "decompression_bomb"}


def sizes_and_frames(d: Path) -> dict:
    write(d / "animated.gif", gif_bytes(11))
    write(d / "huge.png", png(Image.new("RGB", (3000, 2000), (10, 200, 30))))
    write(d / "tiny.png", png(Image.new("RGB", (1, 1))))
    return {"animated.gif": ROW, "huge.png": ROW, "tiny.png": "too_small"}


def over_the_cap(d: Path) -> dict:
    write(d / "big.png", png(picture(300, 300, seed=12)))     # ~270 kB of noise
    return {"big.png": "too_large"}


@dataclass
class Case:
    name: str
    make: Callable[[Path], dict]
    args: list = field(default_factory=list)
    groups: dict = field(default_factory=dict)   # source_id -> expected group, where it matters


BUILD_CASES = [
    Case("broken_files", broken_files),
    Case("odd_modes", odd_modes),
    Case("sizes_and_frames", sizes_and_frames),
    Case("non_utf8_names", non_utf8_names, groups={"d\\xffir/x.jpg": "d\\xffir"}),
    Case("one_symlink_loop", one_loop, groups={"sub/x.jpg": "sub"}),
    Case("two_symlink_loops", two_loops, groups={"b/2.jpg": "b", "c/3.jpg": "c"}),
    Case("special_files", special_files),
    Case("max_bytes", over_the_cap, ["--max-bytes", "100000"]),
]


def outcomes(out: Path) -> tuple[dict, dict]:
    """source_id -> 'row' or the skip reason, and source_id -> group of the rows."""
    with h5py.File(out, "r") as f:
        ids = [s.decode() for s in f["source_id"][:]]
        groups = [s.decode() for s in f["group"][:]]
        sk = f["skipped"]
        skipped = zip((s.decode() for s in sk["source_id"][:]), (s.decode() for s in sk["reason"][:]))
        result = {i: ROW for i in ids}
        for i, reason in skipped:
            assert i not in result, f"{i} recorded twice"
            result[i] = reason
    return result, dict(zip(ids, groups))


def build_args(memes: Path, out: Path, *extra) -> list[str]:
    return ["--memes", str(memes), "--out", str(out), "--no-progress", "--workers", "1", *map(str, extra)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", BUILD_CASES, ids=lambda c: c.name)
def test_build_h5_records_every_hostile_input_once(case, tmp_path, capsys):
    memes = tmp_path / "memes"
    write(memes / "ok.jpg", jpeg())
    expected = {"ok.jpg": ROW, **case.make(memes)}
    out = tmp_path / "ds.h5"
    assert build_h5.main(build_args(memes, out, *case.args)) == 0
    assert "Traceback" not in capsys.readouterr().err
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["rows"] + summary["skipped_total"] == summary["inputs"] == len(expected)
    got, groups = outcomes(out)
    assert got == expected
    for source_id, group in case.groups.items():
        assert groups[source_id] == group
    json.dumps(summary, ensure_ascii=False).encode("utf-8")   # no lone surrogate anywhere in the summary


def usage_error(capsys, argv) -> str:
    """Run build_h5 as its command line does; the one stderr line of an exit-2 refusal."""
    with pytest.raises(SystemExit) as exc:
        run_main("build_h5", build_h5.main, argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.timeout(60)
def test_out_is_checked_before_any_work(tmp_path, capsys):
    memes = tmp_path / "memes"
    write(memes / "ok.jpg", jpeg())
    folder = tmp_path / "a_folder"
    folder.mkdir()
    line = usage_error(capsys, build_args(memes, folder, "--overwrite"))
    assert "is a folder" in line
    assert not (tmp_path / "a_folder.partial").exists()        # nothing was decoded or written
    write(tmp_path / "file.txt", b"x")
    line = usage_error(capsys, build_args(memes, tmp_path / "file.txt" / "ds.h5"))
    assert "file.txt is not a folder" in line
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    assert "gone is not a folder" in usage_error(capsys, build_args(memes, tmp_path / "gone" / "ds.h5"))
    # a missing parent that can be made is made (documented)
    assert build_h5.main(build_args(memes, tmp_path / "new" / "deeper" / "ds.h5")) == 0
    # what is not a regular file is never replaced, even with --overwrite (as root, /dev/null itself was)
    os.mkfifo(tmp_path / "fifo.h5")
    (tmp_path / "dangling.h5").symlink_to(tmp_path / "nowhere" / "ds.h5")
    for out, says in (("fifo.h5", "is a FIFO, not a regular file"), ("dangling.h5", "is a link to nothing"),
                      ("a" * 250 + ".h5", "the name is too long for the file system"),
                      ("b" * 300 + ".h5", "the name is too long for the file system")):
        assert says in usage_error(capsys, build_args(memes, tmp_path / out, "--overwrite"))
    assert (tmp_path / "fifo.h5").is_fifo() and (tmp_path / "dangling.h5").is_symlink()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.timeout(60)
def test_a_second_build_on_the_same_out_is_refused(tmp_path, capsys):
    memes = tmp_path / "memes"
    write(memes / "ok.jpg", jpeg())
    out = tmp_path / "ds.h5"
    partial = write(tmp_path / "ds.h5.partial", b"the first build's work in progress")
    fd = os.open(tmp_path / "ds.h5.lock", os.O_RDWR | os.O_CREAT)   # the first build holds the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        line = usage_error(capsys, build_args(memes, out, "--overwrite"))
        assert "another build is writing" in line
        assert partial.read_bytes() == b"the first build's work in progress" and not out.exists()
    finally:
        os.close(fd)
    assert build_h5.main(build_args(memes, out, "--overwrite")) == 0   # once released, the output is free
    assert not (tmp_path / "ds.h5.lock").exists()


# ---- permissions: root reads and writes through chmod, so these run as ``nobody`` -------------------------

def as_other_user() -> list[str]:
    if os.geteuid() != 0:
        return []           # chmod already binds this user
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: cannot drop privileges to test permissions")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_permissions_unreadable_files_and_read_only_out():
    prefix = as_other_user()
    top = Path(tempfile.mkdtemp(prefix="hostile-perm-", dir="/tmp"))
    try:
        top.chmod(0o777)
        memes = top / "memes"
        write(memes / "ok.jpg", jpeg())
        write(memes / "secret.jpg", jpeg(1)).chmod(0)
        write(memes / "locked" / "inside.jpg", jpeg(2))
        (memes / "locked").chmod(0)
        memes.chmod(0o755)
        read_only = top / "read_only"
        read_only.mkdir(mode=0o555)
        read_only.chmod(0o555)
        writable = top / "out"
        writable.mkdir()
        writable.chmod(0o777)

        def build(out):
            return subprocess.run([*prefix, sys.executable, "-m", "processing.build_h5",
                                   *build_args(memes, out)], cwd=ROOT, capture_output=True, text=True, timeout=90)

        r = build(read_only / "ds.h5")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.stderr.strip().splitlines() == [f"build_h5: error: cannot write {read_only / 'ds.h5'}: "
                                                 f"{read_only} is not writable"]
        r = build(writable / "ds.h5")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        got, _ = outcomes(writable / "ds.h5")
        assert got == {"ok.jpg": ROW, "secret.jpg": "unreadable", "locked/": "unreadable"}
    finally:
        for p in (top / "memes" / "locked", top / "memes" / "secret.jpg"):
            if p.exists():
                p.chmod(0o755)
        shutil.rmtree(top)


# ---- small pieces against plain references ------------------------------------------------------------------

def test_escape_name_is_lossless_and_printable():
    from processing.files import escape_name, unescape_name

    rng = np.random.default_rng(0)
    samples = [bytes(rng.integers(1, 256, rng.integers(1, 30)).astype(np.uint8)) for _ in range(500)]
    samples += [b"plain.jpg", b"caf\xc3\xa9.jpg", b"caf\xe9.jpg", b"back\\slash", b"\\x41", b"tab\there", b"\xff\xfe"]
    for raw in samples:
        name = os.fsdecode(raw)
        text = escape_name(name)
        text.encode("utf-8")                                   # strict: no lone surrogates left
        assert not any(ord(c) < 0x20 or c == "\x7f" for c in text)
        assert os.fsencode(unescape_name(text)) == raw
        assert text == escaped(raw)
    assert escape_name("plain.jpg") == "plain.jpg" and escape_name("café.jpg") == "café.jpg"
    assert escape_name(os.fsdecode(b"caf\xe9.jpg")) == "caf\\xe9.jpg"
    assert escape_name("a\\b") == "a\\\\b" and escape_name("\ud83d") == "\\ud83d"


@pytest.mark.timeout(30)
def test_walk_lists_each_real_folder_once(tmp_path):
    from processing.files import walk

    write(tmp_path / "r" / "a" / "1.jpg", b"1")
    write(tmp_path / "r" / "b" / "2.jpg", b"2")
    write(tmp_path / "outside" / "3.jpg", b"3")
    (tmp_path / "r" / "a" / "to_b").symlink_to("../b")
    (tmp_path / "r" / "b" / "to_a").symlink_to("../a")
    (tmp_path / "r" / "b" / "root").symlink_to("..")
    (tmp_path / "r" / "ext").symlink_to(tmp_path / "outside")
    (tmp_path / "r" / "ext2").symlink_to(tmp_path / "outside")
    write(tmp_path / "r" / ".hidden" / "4.jpg", b"4")
    files, unlisted = walk(tmp_path / "r")
    # reference: the real files, each reached once, at its real place where it has one inside the root
    assert [p.relative_to(tmp_path / "r").as_posix() for p in files] == ["a/1.jpg", "b/2.jpg", "ext/3.jpg"]
    assert unlisted == []


@pytest.mark.timeout(30)
def test_read_capped_reads_regular_files_only(tmp_path):
    from processing.files import read_capped
    from processing.reasons import Rejected

    write(tmp_path / "f", b"x" * 10)
    assert read_capped(tmp_path / "f", 10) == b"x" * 10
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    for name, cap, reason in (("f", 9, "too_large"), ("fifo", 10, "not_a_file"), ("zero", 10, "not_a_file"),
                              ("nope", 10, "missing_file")):
        with pytest.raises(Rejected) as exc:
            read_capped(tmp_path / name, cap)
        assert exc.value.reason == reason, name


@pytest.mark.timeout(30)
def test_not_regular_names_what_a_file_argument_is_without_opening_it(tmp_path):
    from processing.files import FOLDER, MISSING, not_regular

    write(tmp_path / "f", b"")
    os.mkfifo(tmp_path / "fifo")   # opened, it would block this test until the timeout
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "to-f").symlink_to(tmp_path / "f")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        got = {name: not_regular(tmp_path / name) for name in ("f", "to-f", "fifo", "sock", "nope", "loop")}
    assert got == {"f": None, "to-f": None, "fifo": "a FIFO", "sock": "a socket", "nope": MISSING,
                   "loop": "unreadable (Too many levels of symbolic links)"}
    assert not_regular(tmp_path) == FOLDER and not_regular("/dev/null") == "a character device"
    assert not_regular(tmp_path / "f" / "below") == MISSING


def test_untrainable_datasets_are_named():
    from training.h5file import untrainable
    assert "no rows" in untrainable(np.zeros(0, np.uint8), np.zeros(0, np.uint8))
    one_class = untrainable(np.ones(10, np.uint8), np.array([0] * 8 + [1, 2], np.uint8))
    assert "only one class (0 non_meme, 8 meme)" in one_class
    assert "val split is empty" in untrainable(np.array([0, 1, 0, 1], np.uint8), np.array([0, 0, 2, 2], np.uint8))
    assert untrainable(np.array([0, 1, 0, 1, 1], np.uint8), np.array([0, 0, 1, 2, 1], np.uint8)) is None


# ---- predict, evaluate, run (subprocesses, an untrained model) ------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from training.model import build_model
    from training.preprocess import Preprocess

    folder = tmp_path_factory.mktemp("model")
    build_model("memenet").save(folder / "model.keras")
    Preprocess().save(folder)
    return folder


def cli(module, *args, timeout=120):
    """Run a command; stdout must be valid UTF-8 (names are escaped) and stderr free of tracebacks."""
    r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                       timeout=timeout)
    out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8", "replace")   # strict: no lone surrogates
    assert "Traceback" not in err, err[-3000:]
    return r.returncode, out, err


def hostile_folder(root: Path) -> dict:
    """Inputs for predict: name (escaped, relative to ``root``) -> 'row' or the error reason."""
    d = root / "inputs"
    write(d / "ok.jpg", jpeg())
    write(d / NON_UTF8, jpeg(1))
    write(d / "thin_1x5000.png", png(picture(1, 5000, seed=2, caption=None)))
    write(d / "thin_2000x20.png", png(picture(2000, 20, seed=3, caption=None)))
    write(d / "narrow_16x300.png", png(picture(16, 300, seed=4, caption=None)))
    write(d / "zero.jpg", b"")
    (d / "empty_sub").mkdir()
    (d / "loop").symlink_to(".")
    expected = {"ok.jpg": ROW, "caf\\xe9.jpg": ROW, "thin_1x5000.png": ROW, "thin_2000x20.png": ROW,
                "narrow_16x300.png": ROW, "zero.jpg": "not_an_image", **special_files(d)}
    return {f"inputs/{k}": v for k, v in expected.items()}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_predict_prints_one_line_per_path(model_dir, tmp_path):
    expected = hostile_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    expected.update({"empty": "empty_folder", "missing.jpg": "missing_file"})
    args = [model_dir, tmp_path / "inputs", tmp_path / "empty", tmp_path / "missing.jpg"]

    code, out, _ = cli("training.predict", *args)
    assert code == 1
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert len(lines) == len(out.splitlines()) == len(expected)      # one line per path, no more, no less
    for k, want in expected.items():
        fields_ = lines[f"{escaped(str(tmp_path))}/{k}"]     # the keys are escaped names already
        if want == ROW:
            assert 0 <= float(fields_[0]) <= 1, (k, fields_)
        else:
            assert fields_ == ["error", want], (k, fields_)

    # at native size, the thin images cannot go through the model's four poolings (16 px a side at least)
    expected.update({"inputs/thin_1x5000.png": "unsupported_size", "inputs/thin_2000x20.png": "unsupported_size"})
    code, out, _ = cli("training.predict", *args, "--json", "--native-size", "--max-side", "1024")
    assert code == 1
    recs = {json.loads(line)["path"]: json.loads(line) for line in out.splitlines()}
    assert len(recs) == len(out.splitlines()) == len(expected)
    for k, want in expected.items():
        rec = recs[f"{escaped(str(tmp_path))}/{k}"]
        if want == ROW:
            assert 0 <= rec["meme_probability"] <= 1 and not np.isnan(rec["meme_probability"]), rec
        else:
            assert rec["error"] == want, rec


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_max_pixels_above_pillows_cap_reaches_predict_and_evaluate(model_dir, tmp_path):
    """A valid 100 Mpx PNG: a decompression_bomb by default, a picture under --max-pixels 100000000."""
    big = write(tmp_path / "memes" / "big.png", png(Image.new("L", (10_000, 10_000), 200)))
    write(tmp_path / "photos" / "p.png", png(picture(150, 150, seed=1, caption=None)))
    code, out, _ = cli("training.predict", model_dir, big)
    assert code == 1 and out == f"{big}\terror\tdecompression_bomb\n"
    code, out, _ = cli("training.predict", model_dir, big, "--max-pixels", 100_000_000)
    assert code == 0 and 0 <= float(out.split("\t")[1]) <= 1, out
    for native in ([], ["--native-size"]):
        code, out, _ = cli("training.evaluate", model_dir, "--memes", tmp_path / "memes", "--non-memes",
                           tmp_path / "photos", "--json", "--max-pixels", 100_000_000, *native)
        report = json.loads(out)
        assert code == 0 and report["count"] == 2 and report["skipped"] == {}, report


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_evaluate_folders_count_hostile_files(model_dir, tmp_path):
    hostile_folder(tmp_path)
    photos = tmp_path / "photos"
    for i in range(3):
        write(photos / f"{i}.png", png(picture(150, 150, seed=20 + i, caption=None)))
    (photos / "again").symlink_to(".")
    code, out, _ = cli("training.evaluate", model_dir, "--memes", tmp_path / "inputs", "--non-memes", photos,
                       "--json")
    assert code == 0
    report = json.loads(out)
    assert report["count"] == 5 + 3 and report["memes"] == 5
    assert report["skipped"] == {"not_a_file": 3, "missing_file": 1, "unreadable": 1, "not_an_image": 1}

    # at native size the two images too thin for the model are skipped with predict's reason, not fed (NaN)
    code, out, _ = cli("training.evaluate", model_dir, "--memes", tmp_path / "inputs", "--non-memes", photos,
                       "--json", "--native-size", "--out", tmp_path / "native")
    assert code == 0
    report = json.loads(out)
    assert report["count"] == 3 + 3 and report["memes"] == 3 and report["input"] == "native size"
    assert report["skipped"] == {"not_a_file": 3, "missing_file": 1, "unreadable": 1, "not_an_image": 1,
                                 "unsupported_size": 2}
    assert (tmp_path / "native" / "reliability.png").is_file()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_run_refuses_one_class_and_empty_datasets(tmp_path):
    memes = tmp_path / "memes"
    for i in range(12):
        write(memes / f"{i}.jpg", jpeg(i))
    one_class = tmp_path / "one.h5"
    assert build_h5.main(build_args(memes, one_class)) == 0
    fakes = tmp_path / "fakes"
    for i in range(3):
        write(fakes / f"{i}.jpg", b"not a picture")
    empty = tmp_path / "empty.h5"
    assert build_h5.main(build_args(fakes, empty)) == 0
    for data, message in ((one_class, "the train split has only one class"), (empty, "no rows")):
        code, out, err = cli("training.run", "--data", data, "--out", tmp_path / f"run_{data.stem}",
                             "--epochs", "1", "--verbose", "0")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (out, err)
        assert lines[0].startswith(f"training.run: error: {data}: ") and message in lines[0]


@pytest.mark.parametrize("module, argv, says", [
    ("training.run", ["--epochs", "0"], "argument --epochs: expected a whole number of at least 1, got '0'"),
    ("training.run", ["--lr", "nan"], "argument --lr: expected a number above 0, got 'nan'"),
    ("training.run", ["--batch-size", "-3"], "argument --batch-size: expected a whole number of at least 1"),
    ("training.run", ["--degrade-memes", "2"], "argument --degrade-memes: expected a number from 0 to 1, got '2'"),
    ("training.predict", ["m", "p", "--threshold", "nan"], "argument --threshold: expected a number from 0 to 1"),
    ("training.predict", ["m", "p", "--max-side", "0"], "argument --max-side: expected a whole number of at least 1"),
    ("training.evaluate", ["m", "--batch-size", "0"], "argument --batch-size: expected a whole number of at least 1"),
    ("training.evaluate", ["m", "--threshold", "1.5"], "argument --threshold: expected a number from 0 to 1"),
    ("processing.build_h5", ["--workers", "0"], "argument --workers: expected a whole number of at least 1"),
    ("processing.build_h5", ["--max-pixels", "x"], "argument --max-pixels: expected a whole number of at least 1"),
    ("processing.build_h5", ["--bogus"], "unrecognized arguments: --bogus"),
    ("training.report", ["--epochs", "-1"], "argument --epochs: expected a whole number of at least 1"),
    ("demo.chain", ["--memes", "0"], "argument --memes: expected a whole number of at least 1"),
    ("crawler.feed", ["imgur_meme", "--pages", "0"], "argument --pages: expected a whole number of at least 1"),
])
def test_bad_command_line_values_are_one_line_and_exit_2(module, argv, says, capsys):
    """Counts, sizes, rates and probabilities are checked by argparse types (processing.cliutil), and argparse's
    own errors are one line too: no usage block, no traceback further on (a zero batch size, a NaN threshold)."""
    import importlib

    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err and err.endswith("(see --help)\n") and err.count("\n") == 1, err
