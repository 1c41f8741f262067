"""python -m training.report --shared ../shared/data --out reports/real-data [--readme README.md]

Runs the build -> train -> evaluate pipeline on the real data in
``../shared/data`` with default settings and writes report.md / report.json:
per-stage counts and timings, test metrics of the default and the seed
architecture, accuracy on full-resolution photos that were never trained on
(the bias check), the same with the anti-shortcut augmentations switched off,
and a template-disjoint split. With ``--readme`` it rewrites the README's
results table from these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from processing.cliutil import UsageError, atomic_write_json, atomic_write_text, run_main

ROOT = Path(__file__).resolve().parents[1]
NO_AUG = ["--degrade-memes", "0", "--smooth-tiny", "0"]
# name, dataset, arch, training flags beyond the defaults, what it shows
RUNS = [
    ("default", "main", "memenet", [], "default architecture and settings; BSD100 photos among the non-memes"),
    ("seed-arch", "main", "seed", [], "the original architecture, same data and training"),
    ("unseen-templates", "templates", "memenet", [], "test memes from templates never trained on"),
    ("no-photos", "nophotos", "memenet", [], "no photo in training: non-memes are all 32px pictures"),
    ("no-photos-seed-arch", "nophotos", "seed", [], "the same with the original architecture"),
    ("no-photos-no-augment", "nophotos", "memenet", NO_AUG,
     "no photos and no anti-blockiness augmentation: the original's setting"),
]
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def sh(cmd: list[str], log: Path) -> float:
    t0 = time.time()
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        raise UsageError(f"{' '.join(cmd[:4])} failed (exit {r.returncode}); see {log}")
    return time.time() - t0


def build_datasets(shared: Path, out: Path, tiny_count: int, compression: str) -> dict:
    py = sys.executable
    memes, tiny, photos = shared / "memes" / "advice-animals", shared / "tiny" / "cifar10-test", shared / "photos"
    for d in (memes, tiny, photos):
        if not d.is_dir():
            raise UsageError(f"real data not found: {d} (see ../shared/data/MANIFEST.md)")
    common = ["--memes", str(memes), "--tiny", str(tiny), "--tiny-count", str(tiny_count),
              "--compression", compression, "--overwrite", "--no-progress"]
    train_photos = ["--non-memes", str(photos / "BSD100")]
    builds = {
        "main": [*common, *train_photos],
        "templates": [*common, *train_photos, "--group-by", "template"],
        "nophotos": common,
        "heldout": ["--non-memes", str(photos / "Urban100"), "--split", "0,0,1", "--compression", compression,
                    "--overwrite", "--no-progress"],
    }
    return {f"build {name}.h5": sh([py, "-m", "processing.build_h5", *args, "--out", str(out / f"{name}.h5")],
                                   out / f"build_{name}.log") for name, args in builds.items()}


def train_and_evaluate(data_dir: Path, out: Path, epochs: int, runs: list[str]) -> tuple[dict, dict]:
    py = sys.executable
    results, timings = {}, {}
    for name, dataset, arch, flags, what in RUNS:
        if runs and name not in runs:
            continue
        run = out / "runs" / name
        timings[f"train {name}"] = sh([py, "-m", "training.run", "--data", str(data_dir / f"{dataset}.h5"),
                                       "--out", str(run), "--arch", arch, "--epochs", str(epochs), "--overwrite",
                                       *flags], out / f"train_{name}.log")
        timings[f"photos {name}"] = sh([py, "-m", "training.evaluate", str(run), "--data",
                                        str(data_dir / "heldout.h5"), "--split", "test", "--out", str(run / "photos")],
                                       out / f"photos_{name}.log")
        test = json.loads((run / "report.json").read_text())
        photos = json.loads((run / "photos" / "report.json").read_text())
        results[name] = {"what": what, "dataset": dataset, "arch": arch, "flags": " ".join(flags) or "defaults",
                         "test": test, "photos_accuracy": photos["accuracy"], "photos_count": photos["count"],
                         "epochs_run": test["epochs_run"], "train_seconds": test["train_seconds"]}
    return results, timings


def markdown_table(results: dict) -> str:
    rows = ["| run | what it shows | test accuracy | precision | recall | F1 | ROC-AUC | held-out photos called non-meme |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        t = r["test"]
        auc = "n/a" if t["roc_auc"] is None else f"{t['roc_auc']:.4f}"
        rows.append(f"| `{name}` | {r['what']} | {t['accuracy']:.4f} | {t['precision']:.4f} | {t['recall']:.4f} | "
                    f"{t['f1']:.4f} | {auc} | {r['photos_accuracy']:.4f} ({r['photos_count']}) |")
    return "\n".join(rows)


def write_report(out: Path, data_dir: Path, results: dict, timings: dict, meta: dict) -> str:
    counts = {}
    for name in ("main", "templates", "nophotos", "heldout"):
        summary = data_dir / f"{name}.summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            counts[name] = {k: s[k] for k in ("rows", "by_label", "by_split", "skipped")}
    atomic_write_json(out / "report.json", {"meta": meta, "datasets": counts, "runs": results, "timings_s": timings})
    lines = [f"# Real-data report ({meta['created']})", "",
             f"Backend `{meta['backend']}`, {meta['epochs']} epochs max (early stopping on validation loss), "
             f"data from `{meta['shared']}`. Test split: 10% of the memes, of the CIFAR stand-in pictures and (where "
             "trained with photos) of the BSD100 photos. The last column is the bias check: the "
             f"{results[next(iter(results))]['photos_count'] if results else 0} full-resolution Urban100 photos, "
             "never used in any training, processed through the meme path.", "",
             markdown_table(results), "", "## Datasets", ""]
    for name, c in counts.items():
        lines.append(f"- `{name}.h5`: {c['rows']} rows, {c['by_label']}, splits {c['by_split']}, skipped {c['skipped']}")
    lines += ["", "## Stage timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in timings.items()]
    lines += ["", "Plots: `runs/<run>/{learning_curves,roc,confusion,predictions}.png` and `runs/<run>/photos/*.png`."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    return text


def update_readme(readme: Path, results: dict, meta: dict) -> None:
    text = readme.read_text()
    if README_START not in text:
        raise UsageError(f"{readme} has no {README_START} marker")
    block = (f"{README_START}\n_Written by `python -m training.report` on {meta['created']} "
             f"(Keras backend `{meta['backend']}`); see `{meta['out']}/report.md`._\n\n"
             f"{markdown_table(results)}\n{README_END}")
    atomic_write_text(readme, re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text,
                                     flags=re.S))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="real data folder")
    p.add_argument("--out", type=Path, default=Path("reports/real-data"))
    p.add_argument("--prebuilt", type=Path, help="use main/templates/photos .h5 already built in this folder")
    p.add_argument("--tiny-count", type=int, default=1000, help="CIFAR stand-in pictures (default 1000)")
    p.add_argument("--compression", default="none", choices=("none", "lzf", "gzip"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--runs", default="", help="comma-separated subset of: " + ", ".join(r[0] for r in RUNS))
    p.add_argument("--build-only", action="store_true", help="only build the datasets")
    p.add_argument("--readme", type=Path, help="rewrite this README's results table")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    timings = {}
    data_dir = args.prebuilt or args.out
    if not args.prebuilt:
        timings.update(build_datasets(args.shared, args.out, args.tiny_count, args.compression))
    if args.build_only:
        return 0
    results, t = train_and_evaluate(data_dir, args.out, args.epochs, [r for r in args.runs.split(",") if r])
    timings.update(t)
    meta = {"created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "shared": str(args.shared),
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "epochs": args.epochs, "out": str(args.out)}
    print(write_report(args.out, data_dir, results, timings, meta))
    if args.readme:
        update_readme(args.readme, results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("training.report", main))
