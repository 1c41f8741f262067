"""datasets/debian_docs.py on a tiny .deb made here: pictures and PDF pages out, icons left, provenance exact."""

import csv
import hashlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.support.testkit import ROOT

TOOLS = ("dpkg-deb", "pdftoppm", "pdfinfo")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs dpkg-deb and Debian's poppler-utils (scripts/system-deps installs it)")


def make_deb(tmp_path):
    """A documentation package: a screenshot, an icon and a three-page PDF manual."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    tree = tmp_path / "pkg"
    doc = tree / "usr" / "share" / "doc" / "tiny-doc"
    doc.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(doc / "shot.png")
    Image.new("RGB", (16, 16), "red").save(doc / "icon.png")
    with PdfPages(doc / "manual.pdf") as pdf:
        for k in range(3):
            fig = plt.figure(figsize=(4, 5))
            fig.text(0.1, 0.5, rf"page {k}: $\int_0^1 x^{k}\,dx$")
            pdf.savefig(fig)
            plt.close(fig)
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text("Package: tiny-doc\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: a test\n")
    deb = tmp_path / "tiny-doc_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def cli(*args):
    return subprocess.run([sys.executable, "datasets/debian_docs.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_pictures_and_pdf_pages_are_extracted_with_their_provenance(tmp_path):
    deb, out = make_deb(tmp_path), tmp_path / "out"
    r = cli("--out", out, "--deb", deb, "--pdf-pages", 2)
    assert r.returncode == 0, r.stderr
    with open(out / "PROVENANCE.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((row["path"], row["page"]) for row in rows) == [
        ("usr/share/doc/tiny-doc/manual.pdf", "1"), ("usr/share/doc/tiny-doc/manual.pdf", "3"),
        ("usr/share/doc/tiny-doc/shot.png", "")]                          # the icon is too small; pages 1 and 3
    for row in rows:
        assert (row["package"], row["version"]) == ("tiny-doc", "1.0-1")
        data = (out / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and min(Image.open(out / row["file"]).size) > 96
    before = (out / "PROVENANCE.csv").read_text()
    r = cli("--out", out, "--deb", deb, "--pdf-pages", 2)                   # a re-run skips the package
    assert r.returncode == 0 and "already there" in r.stdout and (out / "PROVENANCE.csv").read_text() == before

    from processing import build_h5                                         # the folder is a builder input
    memes = tmp_path / "memes"
    memes.mkdir()
    for i in range(2):
        Image.new("RGB", (120, 120), (i * 90, 30, 30)).save(memes / f"{i}.png")
    assert build_h5.main(["--memes", str(memes), "--non-memes", str(out), "--out", str(tmp_path / "d.h5"),
                          "--no-progress", "--workers", "1", "--split", "0.5,0.5,0"]) == 0
    import h5py
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["labels"][:].tolist().count(0) == 3


def test_a_deb_that_is_not_a_file_is_one_line(tmp_path):
    r = cli("--out", tmp_path / "out", "--deb", tmp_path / "none.deb")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is not a file: give a .deb package" in r.stderr


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    r = cli("--out", tmp_path / "file" / "sub", "--deb", tmp_path / "none.deb")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    r = cli("--out", tmp_path / "file")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a file: give a folder" in r.stderr, r.stderr
