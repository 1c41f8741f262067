"""python -m training.cv --shared ../shared/data --out cv/defaults [--folds 5] [--seeds 0,1] [--readme README.md]
   python -m training.cv --compare cv/*/cv.json [--readme README.md]

Cross-validation grouped by source: the yardstick for sources never seen.
Every source folder of the shared data (``training.realdata``) lies wholly in
one of K folds; each fold trains ``training.run`` on the other folds' sources
and scores its own in full. Folds are balanced per family (each family's
pictures spread over the folds as evenly as its sources allow) and
deterministic per seed; source folders of one name (one repository filed
under two kinds) share a fold. Two seeds by default: the seed draws the folds
and seeds the training.

Writes, in ``--out``: ``data.h5`` (every source, built once), one run per
seed and fold (resumed when killed: a finished fold is not redone),
``cv.json`` (every score), ``cv.md`` (per family and per source: meme recall
or non-meme specificity at the threshold each model stores, per seed, mean
and spread; ROC-AUC per family pair) and ``cv.png``. With ``--readme`` the
tables replace the README's block for ``--name``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from processing.cliutil import (ArgumentParser, UsageError, atomic_write_json, atomic_write_text, count,
                                distinct_list, positive_int, run_main)
from processing.files import NOT_WRITABLE, escape_name, writable_folder
from processing.schema import MEME, SPLIT_NAMES

from .realdata import Source, build_args, discover, families

ROOT = Path(__file__).resolve().parents[1]
FOLDS, SEEDS, TINY_TOTAL = 5, (0, 1), 1500
MIN_SIDE = 32     # every picture a user could send is scored, small stickers included
TARGET = 0.90     # the bar per family, drawn on cv.png
TEST = SPLIT_NAMES.index("test")
# the thresholds compared without retraining, beside the one each fold's model stores (0.5 by default)
THRESHOLD_RULES = {"at_val_threshold": "at the threshold of best balanced accuracy on val",
                   "at_prior_threshold": "at the class-prior threshold (the training data's share of non-memes)"}
OWN_FLAGS = {"--data", "--out", "--seed", "--epochs", "--resume", "--overwrite", "--verbose"}   # per fold, set here


# ---- folds ---------------------------------------------------------------------------------------------------

def _rank(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{name}".encode()).digest()


def assign_folds(rows: dict[str, dict[str, int]], k: int, seed: int) -> dict[str, int]:
    """Fold of each group, from its rows per family (``{origin: {family: rows}}``).

    Groups go largest first (ties in a seeded order) to the fold where their
    families are least filled so far, as a share of each family's rows, then
    the fold with fewest rows, then a seeded fold order. Deterministic for a
    seed; a family's rows spread as evenly as its groups allow.
    """
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    family_total: dict[str, int] = {}
    for fams in rows.values():
        for fam, n in fams.items():
            family_total[fam] = family_total.get(fam, 0) + n
    load = {fam: np.zeros(k) for fam in family_total}
    total = np.zeros(k)
    fold_rank = [_rank(seed, f"fold {i}") for i in range(k)]
    out = {}
    for group in sorted(rows, key=lambda g: (-sum(rows[g].values()), _rank(seed, g))):
        fams = rows[group]

        def cost(i):
            return (sum(load[f][i] / family_total[f] for f in fams if family_total[f]), total[i], fold_rank[i])

        fold = min(range(k), key=cost)
        out[group] = fold
        for fam, n in fams.items():
            load[fam][fold] += n
        total[fold] += sum(fams.values())
    return out


def fold_splits(base_split: np.ndarray, row_sources: np.ndarray, held_out: set[str]) -> np.ndarray:
    """Split codes of one fold: the held-out sources' rows are ``test``; the rest keep the base file's ``val``
    and train on everything else (the base file has no test rows of its own)."""
    split = np.where(base_split == SPLIT_NAMES.index("val"), SPLIT_NAMES.index("val"), SPLIT_NAMES.index("train"))
    split[np.isin(row_sources, sorted(held_out))] = TEST
    return split.astype(np.uint8)


def write_fold_file(base: Path, out: Path, split: np.ndarray) -> None:
    """A dataset that reads ``base``'s images through a virtual dataset (no copy) with its own splits."""
    import h5py

    tmp = out.with_name(f".{out.name}.tmp")
    with h5py.File(base, "r") as src, h5py.File(tmp, "w") as dst:
        images = src["images"]
        layout = h5py.VirtualLayout(shape=images.shape, dtype=images.dtype)
        layout[:] = h5py.VirtualSource(str(base.resolve()), "images", shape=images.shape)
        dst.create_virtual_dataset("images", layout)
        for name, ds in src.items():
            if name not in ("images", "split") and isinstance(ds, h5py.Dataset):
                dst.create_dataset(name, data=ds[()], dtype=ds.dtype)
        dst.create_dataset("split", data=split, chunks=True)
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["split_names"] = json.dumps(SPLIT_NAMES)
    os.replace(tmp, out)


# ---- scores --------------------------------------------------------------------------------------------------

def rate_row(correct: list[int], counts: list[int]) -> dict:
    """Per seed rates, their mean and spread (max - min) over seeds; None where a seed saw no image."""
    rates = [c / n if n else None for c, n in zip(correct, counts)]
    seen = [r for r in rates if r is not None]
    return {"correct": correct, "count": counts, "rates": rates,
            "mean": float(np.mean(seen)) if seen else None,
            "spread": float(max(seen) - min(seen)) if seen else None}


def over_seeds(values: list) -> dict:
    """One figure per seed (None where a seed had nothing to score), their mean and spread."""
    seen = [v for v in values if v is not None]
    return {"per_seed": values, "mean": float(np.mean(seen)) if seen else None,
            "spread": float(max(seen) - min(seen)) if seen else None}


def aggregate(scores: list[dict], sources: list[Source], seeds: list[int], threshold_key: str = "threshold") -> dict:
    """Per source, per family and pooled: meme recall (memes) or specificity (non-memes) per seed, mean, spread;
    ROC-AUC per (meme family, non-meme family) pair and pooled. ``scores`` are one dict per (seed, fold) with
    arrays ``source``, ``label``, ``prob`` and the fold model's ``threshold`` (``threshold_key``: another threshold
    each score holds, such as ``val_threshold``)."""
    from .metrics import roc_auc

    by_key = {s.key: s for s in sources}
    per_seed = {seed: [sc for sc in scores if sc["seed"] == seed] for seed in seeds}

    def cat(seed, field):
        parts = [np.asarray(sc[field]) for sc in per_seed[seed]]
        return np.concatenate(parts) if parts else np.zeros(0)

    columns = {seed: {f: cat(seed, f) for f in ("source", "label", "prob")} for seed in seeds}
    for seed in seeds:
        columns[seed]["right"] = np.concatenate(
            [(np.asarray(sc["prob"]) >= sc[threshold_key]) == (np.asarray(sc["label"]) == MEME)
             for sc in per_seed[seed]]) if per_seed[seed] else np.zeros(0, bool)
        columns[seed]["family"] = np.array([by_key[k].family if k in by_key else "?" for k in columns[seed]["source"]])

    def tally(select) -> dict:
        correct, counts = [], []
        for seed in seeds:
            mask = select(columns[seed])
            correct.append(int(columns[seed]["right"][mask].sum()))
            counts.append(int(mask.sum()))
        return rate_row(correct, counts)

    def auc(memes, non_memes) -> dict:
        values = []
        for seed in seeds:
            c = columns[seed]
            mask = memes(c) | non_memes(c)
            values.append(roc_auc(c["label"][mask], c["prob"][mask]) if mask.any() else None)
        return over_seeds(values)

    fams = families(sources)
    meme_fams = [f for f in fams if any(s.family == f and s.label == MEME for s in sources)]
    other_fams = [f for f in fams if f not in meme_fams]
    return {
        "seeds": seeds,
        "sources": {s.name: {"family": s.family, "label": s.label, **tally(lambda c, k=s.key: c["source"] == k)}
                    for s in sources},
        "families": {f: {"label": MEME if f in meme_fams else 1 - MEME,
                         **tally(lambda c, f=f: c["family"] == f)} for f in fams},
        "pooled": {"meme recall": tally(lambda c: c["label"] == MEME),
                   "non-meme specificity": tally(lambda c: c["label"] != MEME),
                   "roc_auc": auc(lambda c: c["label"] == MEME, lambda c: c["label"] != MEME)},
        "pair_auc": {m: {n: auc(lambda c, m=m: c["family"] == m, lambda c, n=n: c["family"] == n)["mean"]
                         for n in other_fams} for m in meme_fams},
    }


def metadata_check(data: Path, shared: Path, sources: list[Source], folds_of: dict[int, dict[str, int]]) -> dict:
    """ROC-AUC of a classifier on file metadata alone (``training.shortcut``) over each fold's held-out sources,
    fitted on the other folds' rows, pooled per seed; also without the 32-px pictures (whose size alone names
    them). Rows whose file is gone or unreadable are counted, not scored; rows of folders outside the shared data
    (``--build-flags "--non-memes DIR"``: training-only) are neither."""
    import h5py

    from .metrics import roc_auc
    from .shortcut import file_metadata, metadata_log_odds

    by_key = {s.key: s for s in sources}
    with h5py.File(data, "r") as f:
        keys = [k.decode() for k in f["source"][:]]
        ids = [i.decode() for i in f["source_id"][:]]
        labels = f["labels"][:].astype(int)
    meta = [file_metadata(shared / key.split(":", 1)[1] / sid) if key in by_key else None
            for key, sid in zip(keys, ids)]
    read = np.array([m is not None for m in meta])
    fmt = np.array([m[0] if m else 0 for m in meta])
    numeric = np.stack([m[1] if m else np.zeros(5) for m in meta])
    tiny = np.array([key in by_key and by_key[key].family == "tiny" for key in keys])
    every, without_tiny = [], []
    for seed, folds in folds_of.items():
        fold = np.array([folds[by_key[k].name] if k in by_key else -1 for k in keys])
        odds = np.zeros(len(keys))
        for k in sorted(set(folds.values())):
            train, test = read & (fold != k) & (fold >= 0), read & (fold == k)
            if test.any():
                odds[test] = metadata_log_odds(fmt[train], numeric[train], labels[train], fmt[test], numeric[test])
        scored = read & (fold >= 0)
        every.append(roc_auc(labels[scored], odds[scored]))
        rest = scored & ~tiny
        without_tiny.append(roc_auc(labels[rest], odds[rest]) if len(set(labels[rest])) == 2 else None)
    shared_rows = np.array([key in by_key for key in keys])
    return {"roc_auc": over_seeds(every), "roc_auc_without_tiny": over_seeds(without_tiny),
            "rows": int(read.sum()), "unread": int((shared_rows & ~read).sum())}


def _fmt(row: dict) -> tuple[str, str, str]:
    per_seed = " / ".join("n/a" if r is None else f"{r:.3f}" for r in row["rates"])
    mean = "n/a" if row["mean"] is None else f"**{row['mean']:.3f}**"
    spread = "n/a" if row["spread"] is None else f"{row['spread']:.3f}"
    return per_seed, mean, spread


def _seed_row(label: str, measure: str, a: dict) -> str:
    if a["mean"] is None:
        return f"| {label} | {measure} | | n/a | n/a | n/a |"
    per_seed = " / ".join("n/a" if v is None else f"{v:.3f}" for v in a["per_seed"])
    return f"| {label} | {measure} | | {per_seed} | **{a['mean']:.3f}** | {a['spread']:.3f} |"


def markdown(result: dict, title: str) -> str:
    """The CV tables: families (with pooled rows), per family pair ROC-AUC, per source."""
    seeds = " / ".join(str(s) for s in result["seeds"])
    head = f"| {{}} | measure | images | seed {seeds} | mean | spread |\n|---|---|---|---|---|---|"
    lines = [f"**{title}** — grouped {result['folds']}-fold cross-validation by source, seeds {seeds}; "
             f"{result['minutes']:.0f} min of training and scoring on the 2-core machine. Measure at the threshold "
             "each fold's model stores.", "",
             head.format("family")]
    for fam, row in result["families"].items():
        lines.append(f"| {fam} | {'meme recall' if row['label'] == MEME else 'specificity'} | {row['count'][0]} | "
                     + " | ".join(_fmt(row)) + " |")
    pooled = result["pooled"]
    for measure in ("meme recall", "non-meme specificity"):
        row = pooled[measure]
        lines.append(f"| *all* | {measure} | {row['count'][0]} | " + " | ".join(_fmt(row)) + " |")
    for key, rule in THRESHOLD_RULES.items():
        other = result.get(key)
        if other:
            rec, spec = (other["pooled"][m]["mean"] for m in ("meme recall", "non-meme specificity"))
            worst = min(other["families"].items(), key=lambda kv: kv[1]["mean"] if kv[1]["mean"] is not None else 1)
            lines.append(f"| *all, {rule}* | recall / specificity | | | {rec:.3f} / {spec:.3f} | "
                         f"(weakest family {worst[0]} {worst[1]['mean']:.3f}) |")
    lines.append(_seed_row("*all*", "ROC-AUC", pooled["roc_auc"]))
    shortcut = result.get("metadata")
    if shortcut:
        lines.append(_seed_row("*file metadata alone* (format, bytes, width, height)", "ROC-AUC", shortcut["roc_auc"]))
        lines.append(_seed_row("*file metadata alone*, without the 32-px pictures", "ROC-AUC",
                               shortcut["roc_auc_without_tiny"]))
    pairs = result["pair_auc"]
    if pairs:
        cols = list(next(iter(pairs.values())))
        lines += ["", "ROC-AUC, memes of a family (rows) against non-memes of a family (columns), mean over seeds:", "",
                  "| memes \\ non-memes | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for m, row in pairs.items():
            lines.append(f"| {m} | " + " | ".join("n/a" if row[n] is None else f"{row[n]:.3f}" for n in cols) + " |")
    lines += ["", "<details><summary>per source</summary>", "", head.format("source")]
    for name, row in result["sources"].items():
        lines.append(f"| `{name}` | {'meme recall' if row['label'] == MEME else 'specificity'} | {row['count'][0]} | "
                     + " | ".join(_fmt(row)) + " |")
    lines += ["", "</details>"]
    return "\n".join(lines)


def comparison(results: list[dict]) -> str:
    """Variants side by side, one row each: pooled recall, specificity and ROC-AUC (at the stored threshold, then
    at the val and class-prior thresholds), then per family (meme recall for a meme family, specificity for a
    non-meme family); the mean over seeds, the spread in brackets, the best of each column in bold. A difference
    smaller than the spreads is a tie."""
    labels = {f: v["label"] for r in results for f, v in r["families"].items()}
    fams = sorted(labels, key=lambda f: (labels[f] != MEME, f == "tiny", f))
    columns = [("recall", lambda r: r["pooled"]["meme recall"]),
               ("specificity", lambda r: r["pooled"]["non-meme specificity"]),
               ("ROC-AUC", lambda r: r["pooled"]["roc_auc"])]
    for key, short in (("at_val_threshold", "val threshold"), ("at_prior_threshold", "class-prior threshold")):
        for measure, word in (("meme recall", "recall"), ("non-meme specificity", "specificity")):
            columns.append((f"{word}, {short}",
                            lambda r, key=key, measure=measure: r.get(key, {}).get("pooled", {}).get(measure)))
    columns += [(fam, lambda r, fam=fam: r["families"].get(fam)) for fam in fams]
    cells = [[get(r) for r in results] for _, get in columns]
    best = [max((c["mean"] for c in col if c and c["mean"] is not None), default=None) for col in cells]

    def shown(cell, top) -> str:
        if not cell or cell["mean"] is None:
            return "n/a"
        text = f"**{cell['mean']:.3f}**" if cell["mean"] == top else f"{cell['mean']:.3f}"
        seeds = cell.get("rates") or cell.get("per_seed") or []
        return text + (f" ({cell['spread']:.3f})" if len(seeds) > 1 else "")

    lines = ["| variant | seeds | minutes | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for i, r in enumerate(results):
        lines.append(f"| `{r['name']}` | {len(r['seeds'])} | {r['minutes']:.0f} | "
                     + " | ".join(shown(col[i], top) for col, top in zip(cells, best)) + " |")
    return "\n".join(lines + ["", "Family columns: meme recall for " + ", ".join(f for f in fams if labels[f] == MEME)
                               + "; specificity for the others. Minutes: training and scoring on the 2-core machine."])


def readme_block(name: str) -> tuple[str, str]:
    return f"<!-- cv:{name}:start -->", f"<!-- cv:{name}:end -->"


def replace_block(text: str, name: str, body: str, anchor: str = "<!-- cv:end -->") -> str:
    """``text`` with the block of ``name`` replaced by ``body`` (added before ``anchor``, else at the end)."""
    start, end = readme_block(name)
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        return text[:text.index(start)] + block + text[text.index(end) + len(end):]
    if anchor in text:
        return text.replace(anchor, f"{block}\n\n{anchor}", 1)
    return text.rstrip("\n") + f"\n\n{block}\n"


def plot(result: dict, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = [f for f, r in result["families"].items() if r["mean"] is not None]
    means = [result["families"][f]["mean"] for f in fams]
    lows = [m - min(r for r in result["families"][f]["rates"] if r is not None) for f, m in zip(fams, means)]
    highs = [max(r for r in result["families"][f]["rates"] if r is not None) - m for f, m in zip(fams, means)]
    colours = ["tab:red" if result["families"][f]["label"] == MEME else "tab:blue" for f in fams]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(fams) + 1.5))
    ax.barh(fams, means, xerr=[lows, highs], color=colours, capsize=3)
    ax.axvline(TARGET, color="k", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("meme recall (red) / non-meme specificity (blue); bars: range over seeds")
    ax.set_title(textwrap.fill(title, 80), fontsize=8)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


# ---- the run -------------------------------------------------------------------------------------------------

def sh(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        r = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode:
        raise UsageError(f"{' '.join(cmd[1:4])} failed (exit {r.returncode}); see {log}")


def build(sources: list[Source], shared: Path, out: Path, args) -> Path:
    data = out / "data.h5"
    if data.exists():
        return data
    print(f"training.cv: building {data} from {len(sources)} source folders", file=sys.stderr)
    sh([sys.executable, "-m", "processing.build_h5", *build_args(sources, args.tiny_count),
        "--source-root", str(shared), "--split", "0.9,0.1,0", "--min-side", str(args.min_side),
        "--no-progress", "--overwrite", "--out", str(data), *args.build_flags], out / "build.log")
    return data


def score_fold(run: Path, data: Path, batch_size: int = 64) -> dict:
    """Probabilities of the fold's held-out rows, with their sources and labels, and the model's threshold."""
    import keras

    from .classifier import load_classifier, predict_probs
    from .data import H5Batches
    from .h5file import read_sources
    from .metrics import choose_threshold

    model, pre = load_classifier(run)
    ds = H5Batches(data, "test", batch_size)
    probs = predict_probs(model, (ds[i][0] for i in range(len(ds))))
    val = H5Batches(data, "val", batch_size)
    val_probs = predict_probs(model, (val[i][0] for i in range(len(val))))
    sources = read_sources(data, ds.indices)
    keras.backend.clear_session()
    return {"source": sources, "label": ds.labels.astype(int).tolist(), "prob": probs.astype(float).tolist(),
            "threshold": pre.threshold, "val_threshold": choose_threshold(val.labels.astype(int), val_probs)}


def prior_threshold(train_labels: np.ndarray) -> float:
    """The class-prior threshold: the share of non-memes among the training rows. The model learns with
    balanced class weights, so its probability holds for equal priors; calling a picture a meme above this
    threshold is the Bayes decision under the training data's own mix of memes and non-memes."""
    return float(np.mean(np.asarray(train_labels) != MEME))


def fold_prior_threshold(fold_data: Path) -> float:
    import h5py

    with h5py.File(fold_data, "r") as f:
        return prior_threshold(f["labels"][:][f["split"][:] == SPLIT_NAMES.index("train")])


def run_fold(data: Path, fold_dir: Path, seed: int, args) -> dict:
    done = fold_dir / "scores.json"
    previous = json.loads(done.read_text()) if done.exists() else {}
    if "val_threshold" in previous:   # else scored before the val threshold was recorded: scored again
        if "prior_threshold" not in previous:     # needs no model: added to folds scored before it was
            previous["prior_threshold"] = fold_prior_threshold(fold_dir / "data.h5")
            atomic_write_json(done, previous)
        return previous
    run = fold_dir / "run"
    resume = ["--resume"] if (run / "state.json").exists() and not (run / "model.keras").exists() else ["--overwrite"]
    t0 = time.time()
    if not (run / "model.keras").exists():
        sh([sys.executable, "-m", "training.run", "--data", str(fold_dir / "data.h5"), "--out", str(run),
            "--seed", str(seed), "--epochs", str(args.epochs), "--verbose", "0", *args.train_flags, *resume],
           fold_dir / "train.log")
    scores = {**score_fold(run, fold_dir / "data.h5"), "seconds": previous.get("seconds", round(time.time() - t0, 1)),
              "prior_threshold": fold_prior_threshold(fold_dir / "data.h5")}
    atomic_write_json(done, scores)
    return scores


def check_args(args) -> None:
    """Before any work: --out can be a folder, and the variant's flags are ones training.run takes."""
    from .run import parse_args as run_args

    place, problem = writable_folder(args.out)
    if problem:
        where = "" if place == args.out else f" cannot be made: {escape_name(str(place))}"
        raise UsageError(f"--out {escape_name(str(args.out))}{where} is {problem}"
                         f"{'' if problem == NOT_WRITABLE else ', not a folder'}: give a folder for the runs")
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            variant = run_args([*args.train_flags, "--data", "x", "--out", "x"])
    except SystemExit as exc:
        lines = said.getvalue().strip().splitlines()
        why = lines[-1].removeprefix("python -m training.run: error: ") if exc.code and lines else "not a training flag"
        raise UsageError(f"--train-flags {shlex.join(args.train_flags)!r}: {why}") from None
    taken = sorted({f.split("=")[0] for f in args.train_flags} & OWN_FLAGS)
    if taken:
        raise UsageError(f"--train-flags: {', '.join(taken)} are set by training.cv itself (use its own options)")
    args.epochs = args.epochs or variant.epochs     # by default what the variant's own training.run would train


def cross_validate(args) -> dict:
    check_args(args)
    sources = discover(args.shared)
    if not any(s.label == MEME for s in sources) or not any(s.label != MEME for s in sources):
        raise UsageError(f"no memes and non-memes found in {args.shared}: give the shared data folder "
                         "(memes/<family>/..., nonmemes-*/..., photos/..., tiny/...; see its MANIFEST.md)")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = build(sources, args.shared, args.out, args)
    import h5py
    with h5py.File(data, "r") as f:
        row_sources = np.array([s.decode() for s in f["source"][:]])
        base_split = f["split"][:]
    sources = [s for s in sources if s.key in set(row_sources)]   # a folder with no decodable picture has no rows
    if {s.label for s in sources} != {0, 1}:
        raise UsageError(f"no decodable memes or no decodable non-memes in {escape_name(str(args.shared))}: "
                         f"nothing to cross-validate (the skips and their reasons: {args.out / 'data.summary.json'})")
    rows: dict[str, dict[str, int]] = {}
    for s in sources:
        n = int((row_sources == s.key).sum())
        rows.setdefault(s.origin, {}).setdefault(s.family, 0)
        rows[s.origin][s.family] += n
    scores, folds_of = [], {}
    for seed in args.seeds:
        folds = assign_folds(rows, args.folds, seed)
        folds_of[seed] = {s.name: folds[s.origin] for s in sources}
        for k in range(args.folds):
            fold_dir = args.out / f"seed{seed}" / f"fold{k}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            held = {s.key for s in sources if folds[s.origin] == k}
            if not (fold_dir / "data.h5").exists():
                write_fold_file(data, fold_dir / "data.h5", fold_splits(base_split, row_sources, held))
            t = time.time()
            sc = run_fold(data, fold_dir, seed, args)
            scores.append({**sc, "seed": seed, "fold": k})
            print(f"training.cv: seed {seed} fold {k + 1}/{args.folds}: {len(sc['prob'])} held-out pictures of "
                  f"{len(held)} sources ({time.time() - t:.0f} s)", file=sys.stderr)
    at_other = {key: aggregate(scores, sources, list(args.seeds), key.removeprefix("at_"))
                for key in THRESHOLD_RULES}
    result = {"name": args.name, "folds": args.folds, **aggregate(scores, sources, list(args.seeds)),
              **{key: {"families": a["families"], "pooled": a["pooled"]} for key, a in at_other.items()},
              "minutes": sum(sc["seconds"] for sc in scores) / 60, "fold_of": folds_of,
              "train_flags": args.train_flags, "build_flags": args.build_flags, "epochs": args.epochs,
              "tiny_count": args.tiny_count,
              "min_side": args.min_side, "fold_seconds": [sc["seconds"] for sc in scores],
              "metadata": metadata_check(data, args.shared, sources, folds_of)}
    atomic_write_json(args.out / "cv.json", result)
    title = (f"{args.name}: {' '.join(args.train_flags) or 'training.run defaults'}, {args.epochs} epochs"
             + (f"; build_h5 {' '.join(args.build_flags)}" if args.build_flags else ""))
    table = markdown(result, title)
    atomic_write_text(args.out / "cv.md", table + "\n")
    plot(result, args.out / "cv.png", title)
    if args.readme:
        atomic_write_text(args.readme, replace_block(args.readme.read_text(), args.name, table))
    print(table)
    print(f"training.cv: {result['minutes']:.1f} min of training and scoring over the folds "
          f"({(time.time() - t0) / 60:.1f} min this time); {args.out / 'cv.md'}, {args.out / 'cv.png'}")
    return result


def flags_arg(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r}: {exc}") from None


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m training.cv", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    p.add_argument("--out", type=Path, help="folder for the dataset, the fold runs and the tables")
    p.add_argument("--compare", nargs="+", metavar="CV_JSON",
                   help="no run: the variants' cv.json side by side (into --readme's block 'comparison')")
    p.add_argument("--name", default="defaults", help="the variant's name in the tables and the README block")
    p.add_argument("--folds", type=positive_int, default=FOLDS, help=f"K (default {FOLDS})")
    p.add_argument("--seeds", type=distinct_list(count, "0,1"), default=SEEDS, help="seeds, each its own folds and training "
                                                                  "(default 0,1)")
    p.add_argument("--epochs", type=positive_int,
                   help="epochs per fold (default: training.run's for the variant's --arch, so the CV measures "
                        "what a user's run trains)")
    p.add_argument("--tiny-count", type=count, default=TINY_TOTAL,
                   help=f"32x32 pictures in all from tiny/ (default {TINY_TOTAL})")
    p.add_argument("--min-side", type=positive_int, default=MIN_SIDE,
                   help=f"build_h5 --min-side: pictures with a shorter side are left out (default {MIN_SIDE})")
    p.add_argument("--train-flags", type=flags_arg, default=[], metavar="FLAGS",
                   help="training.run flags of the variant, e.g. \"--synth-memes 0 --degrade-memes 0\"")
    p.add_argument("--build-flags", type=flags_arg, default=[], metavar="FLAGS",
                   help="more processing.build_h5 flags for data.h5")
    p.add_argument("--readme", type=Path, help="replace this file's block for --name with the tables")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 folds, seed 0, 1 epoch, 200 tiny pictures, training at 64 px")
    args = p.parse_args(argv)
    if args.folds < 2:
        p.error("--folds must be at least 2")
    if args.out is None and not args.compare:
        p.error("give --out (a cross-validation) or --compare (tables of earlier ones)")
    if args.quick:
        args.folds, args.seeds, args.epochs, args.tiny_count = 2, (0,), 1, min(args.tiny_count, 200)
        args.train_flags = [*args.train_flags, "--sizes", "64"]
    if args.readme is not None and not args.readme.is_file():
        p.error(f"--readme {args.readme}: not a file")
    return args


def compare(args) -> None:
    results = []
    for path in args.compare:
        try:
            results.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--compare {path}: not a cv.json of training.cv ({exc})") from None
    table = comparison(results)
    if args.readme:
        atomic_write_text(args.readme, replace_block(args.readme.read_text(), "comparison", table))
    print(table)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compare:
        compare(args)
    else:
        cross_validate(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("training.cv", main))
