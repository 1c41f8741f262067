"""python -m training.report --shared ../shared/data --out reports/real-data [--readme README.md]

Runs the build -> train -> evaluate pipeline on the real data in
``../shared/data`` with default settings and writes report.md / report.json:
per-stage counts and timings, test metrics of each run (by default the
default model and the two leave-one-source-out runs; ``--runs all`` adds the
original architecture and the original's setting), and the out-of-distribution table (``training.ood``): each real
folder scored on its own, as meme recall or non-meme specificity with counts,
on its held-out test split where it was trained on and in full where it was
not. The leave-one-source-out runs train without memes/modern and without
nonmemes-text and score on them: the honest numbers for memes and hard
negatives unlike anything trained on. errors.png shows the most confident
mistakes. With ``--readme`` it rewrites the README's results section.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from processing.cliutil import (ArgumentParser, UsageError, atomic_write_json, atomic_write_text, count, positive_int,
                                run_main)

from .ood import build_inputs, instructive_errors, markdown_table as ood_table, real_folders

ROOT = Path(__file__).resolve().parents[1]
NO_AUG = ["--degrade-memes", "0", "--smooth-tiny", "0", "--synth-memes", "0", "--synth-nonmemes", "0"]
# dataset name -> families of training.ood folders left out of it ("nophotos": the original's setting, Advice
# Animals against tiny pictures only)
DATASETS = {"all": (), "nomodern": ("modern",), "notext": ("text",), "noworld": ("world",),
            "nophotos": ("modern", "world", "text", "photos")}
# what each leave-one-source-out dataset shows
LEFT_OUT = {"nomodern": "no memes/modern", "notext": "no text-bearing non-memes (nonmemes-text, nonmemes-text2)",
            "noworld": "no memes/world"}
# name, dataset, arch, training flags beyond the defaults, what it shows: each leave-one-source-out run for both
# architectures, side by side
RUNS = [
    ("memenet", "all", "memenet", [], "CNN learned from scratch; every real source, every kind of non-meme"),
    ("lite0", "all", "lite0", [], "ImageNet EfficientNet-Lite0 trunk under the SPP head, fine-tuned; same data"),
    ("original-arch", "all", "original", [], "the original architecture, same data and training"),
    *[(f"{arch}-no-{name.removeprefix('no')}", name, arch, [], f"leave-one-source-out: {LEFT_OUT[name]} in training")
      for name in LEFT_OUT for arch in ("memenet", "lite0")],
    ("no-photos-no-augment", "nophotos", "memenet", NO_AUG,
     "Advice Animals against 32px pictures only, no anti-shortcut augmentation: the original's setting"),
]
# what the README's table shows: both architectures on every real source and on each leave-one-source-out
# dataset; the other two runs are asked for by name (--runs)
DEFAULT_RUNS = tuple(r[0] for r in RUNS if r[0] not in ("original-arch", "no-photos-no-augment"))
# at most this many epochs per run: the scratch CNN needs its 8 (issue 12); the pretrained trunk trains the 3 of
# training.run's default (the cross-validation's winner)
DEFAULT_EPOCHS = {"memenet": 8, "original": 8, "lite0": 3}
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def sh(cmd: list[str], log: Path) -> float:
    t0 = time.time()
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        raise UsageError(f"{' '.join(cmd[:4])} failed (exit {r.returncode}); see {log}")
    return time.time() - t0


def datasets_of(runs: list[str]) -> list[str]:
    """The datasets the named runs train on, in DATASETS order."""
    used = {dataset for name, dataset, *_ in RUNS if name in runs}
    return [name for name in DATASETS if name in used]


def checked_folders(shared: Path) -> list:
    """The real folders (training.ood); UsageError if the shared data lacks a family every run needs.

    Checked with --prebuilt datasets too: without the folders the table would be silently empty."""
    folders = real_folders(shared)
    for family in ("advice-animals", "tiny", "photos"):
        if not any(f.family == family for f in folders):
            raise UsageError(f"real data not found: no {family} folder in {shared} (see ../shared/data/MANIFEST.md)")
    return folders


def build_datasets(folders: list, out: Path, tiny_count: int, compression: str, names: list[str]) -> dict:
    py = sys.executable
    return {f"build {name}.h5": sh([py, "-m", "processing.build_h5",
                                    *build_inputs(folders, DATASETS[name], tiny_count),
                                    "--group-by", "template", "--compression", compression, "--overwrite",
                                    "--no-progress", "--out", str(out / f"{name}.h5")], out / f"build_{name}.log")
            for name in names}


def train_command(run: str, data: Path, out: Path, epochs: int | None, seed: int,
                  extra: tuple[str, ...] = ()) -> list[str]:
    """The training.run command line of the named run (RUNS) on ``data``, written to ``out``; ``epochs`` None:
    its architecture's DEFAULT_EPOCHS; ``extra``: flags for every run, after the run's own (an ablation)."""
    _, _, arch, flags, _ = next(r for r in RUNS if r[0] == run)
    return [sys.executable, "-m", "training.run", "--data", str(data), "--out", str(out), "--arch", arch,
            "--epochs", str(epochs or DEFAULT_EPOCHS[arch]), "--seed", str(seed), "--overwrite", *flags, *extra]


def train_and_evaluate(folders: list, data_dir: Path, out: Path, epochs: int | None, runs: list[str], seed: int = 0,
                       extra: tuple[str, ...] = ()):
    """Trains each run, then scores it per folder; returns (results, timings, error candidates)."""
    from .classifier import load_classifier
    from .ood import score_run

    results, timings, errors = {}, {}, []
    for name, dataset, arch, flags, what in RUNS:
        if name not in runs:
            continue
        run = out / "runs" / name
        data = data_dir / f"{dataset}.h5"
        timings[f"train {name}"] = sh(train_command(name, data, run, epochs, seed, extra), out / f"train_{name}.log")
        t0 = time.time()
        model, pre = load_classifier(run)
        trained = {f.name for f in folders if f.family not in DATASETS[dataset]}
        scores, wrong = score_run(model, pre, folders, str(data), trained)
        timings[f"folders {name}"] = time.time() - t0
        errors += [(f"{name}: {folder}", label, p, image) for folder, label, p, image in wrong]
        atomic_write_json(run / "ood.json", [s.to_dict() for s in scores])
        test = json.loads((run / "report.json").read_text())
        results[name] = {"what": what, "dataset": dataset, "arch": arch, "flags": " ".join([*flags, *extra]) or "defaults",
                         "test": test, "threshold": pre.threshold, "folders": scores,
                         "epochs_run": test["epochs_run"], "train_seconds": test["train_seconds"]}
    return results, timings, errors


def errors_grid(errors, out: Path) -> None:
    """The most confident mistakes over all runs, a few per folder, in one PNG."""
    from . import plots

    picked = instructive_errors(errors)
    if picked:
        plots.prediction_grid([c[3] for c in picked], [c[1] for c in picked], [c[2] for c in picked],
                              out / "errors.png", captions=[c[0] for c in picked])


def markdown_table(results: dict) -> str:
    rows = ["| run | what it shows | test accuracy | precision | recall | F1 | ROC-AUC | threshold (from val) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        t = r["test"]
        auc = "n/a" if t["roc_auc"] is None else f"{t['roc_auc']:.4f}"
        rows.append(f"| `{name}` | {r['what']} | {t['accuracy']:.4f} | {t['precision']:.4f} | {t['recall']:.4f} | "
                    f"{t['f1']:.4f} | {auc} | {r['threshold']:.3f} |")
    return "\n".join(rows)


HONEST = ("Each real folder is scored on its own: on its held-out test split (`test split`) where the run trained "
          "on that folder, in full (`never trained on`) where it did not. The never-trained-on columns come from "
          "the leave-one-source-out runs (`*-no-modern` on `memes/modern/*`, `*-no-world` on `memes/world/*`, "
          "`*-no-text` on `nonmemes-text/*` and `nonmemes-text2/*`): the honest numbers, memes and hard negatives "
          "unlike anything the model was trained on. Thresholds are chosen on each run's validation split (highest "
          "balanced accuracy; within one validation image of it, nearest 0.5).")
NEVER = "all, never trained on"    # training.ood.score_run's scope of a folder left out of training


def side_by_side(results: dict) -> str:
    """One row per real folder, one column per architecture and scope: the held-out test split of the run on every
    source (dataset ``all``), and the whole folder in the leave-one-source-out run that left its family out."""
    archs = list(dict.fromkeys(r["arch"] for r in results.values()))
    cells, metric = {}, {}
    for r in results.values():
        for s in r["folders"]:
            if (r["dataset"] == "all") == (s.scope != NEVER) and r["dataset"] in ("all", *LEFT_OUT):
                cells[(s.folder, r["arch"], s.scope != NEVER)] = s
                metric.setdefault(s.folder, s.metric)
    columns = [(arch, held_out) for held_out in (True, False) for arch in archs]
    rows = ["| folder | measure | " + " | ".join(f"{a}, {'test split' if h else 'never trained on'}"
                                                 for a, h in columns) + " |",
            "|---|---|" + "---|" * len(columns)]
    for folder in metric:
        shown = []
        for arch, held_out in columns:
            c = cells.get((folder, arch, held_out))
            shown.append("" if c is None or c.rate is None else f"{c.correct}/{c.count} = {c.rate:.2f}")
        rows.append(f"| `{folder}` | {metric[folder]} | " + " | ".join(shown) + " |")
    return "\n".join(rows)


def epochs_text(meta: dict) -> str:
    epochs = meta["epochs"]
    return (f"{epochs} epochs" if epochs else ", ".join(f"{a} {n}" for a, n in DEFAULT_EPOCHS.items()) + " epochs")


def write_report(out: Path, data_dir: Path, results: dict, timings: dict, meta: dict) -> str:
    counts = {}
    for name in datasets_of(list(results)):
        summary = data_dir / f"{name}.summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            counts[name] = {k: s[k] for k in ("rows", "by_label", "by_split", "skipped")}
    runs = {name: {**r, "folders": [s.to_dict() for s in r["folders"]]}
            for name, r in results.items()}
    atomic_write_json(out / "report.json", {"meta": meta, "datasets": counts, "runs": runs, "timings_s": timings})
    lines = [f"# Real-data report ({meta['created']})", "",
             f"Backend `{meta['backend']}`, seed {meta.get('seed', 0)}, at most {epochs_text(meta)} (early stopping on "
             f"validation loss), data from `{meta['shared']}`, splits grouped by template (train/val/test "
             f"0.8/0.1/0.1)." + (f" Every run trained with `{meta['train_flags']}`." if meta.get("train_flags") else ""),
             "", markdown_table(results), "", "## Out of distribution: every real folder on its own",
             "", HONEST, "", side_by_side(results), "", "Every run, folder by folder:", "",
             ood_table({name: r["folders"] for name, r in results.items()}), "", "## Datasets", ""]
    for name, c in counts.items():
        lines.append(f"- `{name}.h5`: {c['rows']} rows, {c['by_label']}, splits {c['by_split']}, skipped {c['skipped']}")
    lines += ["", "## Stage timings (s)", ""] + [f"- {k}: {v:.1f}" for k, v in timings.items()]
    lines += ["", "Plots: `errors.png` (the most confident mistakes of all runs, at most two per folder and run) and "
              "`runs/<run>/{learning_curves,roc,reliability,confusion,predictions}.png`."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    return text


def update_readme(readme: Path, results: dict, meta: dict) -> None:
    text = readme.read_text()
    if README_START not in text:
        raise UsageError(f"{readme} has no {README_START} marker")
    block = (f"{README_START}\n_Written by `python -m training.report` on {meta['created']} "
             f"(Keras backend `{meta['backend']}`, seed {meta.get('seed', 0)}, at most {epochs_text(meta)}); see "
             f"`{meta['out']}/report.md` for every run folder by folder._\n\n"
             f"{markdown_table(results)}\n\n{HONEST}\n\n{side_by_side(results)}\n{README_END}")
    atomic_write_text(readme, re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text,
                                     flags=re.S))


def shell_words(text: str) -> tuple[str, ...]:
    """argparse type of --train-flags: the words of a shell-quoted string."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:   # an unclosed quote
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into flags: {exc}") from None


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m training.report", description=__doc__)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="real data folder")
    p.add_argument("--out", type=Path, default=Path("reports/real-data"))
    p.add_argument("--prebuilt", type=Path, help="use the " + "/".join(DATASETS) + " .h5 already built in this folder")
    p.add_argument("--tiny-count", type=positive_int, default=1000, help="CIFAR stand-in pictures (default 1000)")
    p.add_argument("--compression", default="none", choices=("none", "lzf", "gzip"))
    p.add_argument("--epochs", type=positive_int,
                   help="at most this many epochs per run (default, for the CPU: "
                        + ", ".join(f"{n} for {a}" for a, n in DEFAULT_EPOCHS.items()) + "; 20 on a GPU)")
    p.add_argument("--runs", default=",".join(DEFAULT_RUNS),
                   help="comma-separated runs, or 'all': " + ", ".join(r[0] for r in RUNS)
                   + f" (default {','.join(DEFAULT_RUNS)})")
    p.add_argument("--seed", type=count, default=0,
                   help="the seed every run trains with (default 0); a second seed shows how much a figure is noise")
    p.add_argument("--train-flags", type=shell_words, default=(), metavar="FLAGS",
                   help="training.run flags added to every run, e.g. '--synth-memes 0 --synth-nonmemes 0' (an "
                        "ablation; named in report.md)")
    p.add_argument("--build-only", action="store_true", help="only build the datasets of the chosen runs")
    p.add_argument("--readme", type=Path, help="rewrite this README's results section")
    return p.parse_args(argv)


def chosen_runs(text: str) -> list[str]:
    """The run names of ``--runs`` ('all': every run), UsageError for an unknown one."""
    known = [r[0] for r in RUNS]
    names = known if text.strip() == "all" else [r.strip() for r in text.split(",") if r.strip()]
    if not names or set(names) - set(known):
        raise UsageError(f"--runs takes 'all' or names from: {', '.join(known)}")
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = chosen_runs(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    timings = {}
    data_dir = args.prebuilt or args.out
    folders = checked_folders(args.shared)
    if not args.prebuilt:
        timings.update(build_datasets(folders, args.out, args.tiny_count, args.compression, datasets_of(runs)))
    if args.build_only:
        return 0
    results, t, errors = train_and_evaluate(folders, data_dir, args.out, args.epochs, runs, args.seed,
                                            args.train_flags)
    timings.update(t)
    errors_grid(errors, args.out)
    meta = {"created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "shared": str(args.shared),
            "backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "epochs": args.epochs, "seed": args.seed,
            "out": str(args.out), "train_flags": shlex.join(args.train_flags)}
    print(write_report(args.out, data_dir, results, timings, meta))
    if args.readme:
        update_readme(args.readme, results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("training.report", main))
