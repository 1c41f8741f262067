"""The demo pipeline through the real CLIs, on a tiny generated corpus (marked slow; CI runs it)."""

import json
import subprocess
import sys

import h5py
import pytest

from tests.support.testkit import ROOT
from processing.manifest import read_manifests



@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "demo", "--out", str(out), "--generated", "--memes", "30",
                        "--tiny", "60", "--epochs", "1", "--arch", "original"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "demo on the generated corpus" in r.stdout
    manifests = read_manifests([out / "crawl" / "manifests"])
    statuses = {k: v.status for k, v in manifests.records.items()}
    loc = {k[1]: s for k, s in statuses.items() if k[0] == "loc_archive"}
    imgur = {k[1]: s for k, s in statuses.items() if k[0] == "imgur"}
    assert len(loc) == 20 and sorted(s for s in loc.values() if s != "ok") == ["http_404", "not_an_image",
                                                                               "size_mismatch"]
    assert len(imgur) == 12 and imgur["dmgif"] == "animated" and imgur["dmgone"] == "removed"
    summary = json.loads((out / "dataset.summary.json").read_text())
    assert summary["inputs"] == 20 + 12 + 60 == summary["rows"] + summary["skipped_total"]
    with h5py.File(out / "dataset.h5") as f:
        assert f["images"].shape == (summary["rows"], 128, 128, 3)
        assert int(f["labels"][:].sum()) == 27
    report = json.loads((out / "run" / "report.json").read_text())
    assert report["count"] > 0 and 0 <= report["accuracy"] <= 1
    with h5py.File(out / "dataset.h5") as f:        # no shared data: each source (a crawl, CIFAR) its own family
        assert {r["group"] for r in report["by_family"]} <= {s.decode() for s in f["source"][:]}
    assert sum(r["images"] for r in report["by_family"]) == report["count"] and "test by family   : " in r.stdout
    assert (out / "run" / "model.keras").is_file() and (out / "logs" / "predict.log").read_text().count("\t") >= 6
