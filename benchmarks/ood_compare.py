"""Fit and caption synthesis compared on real folders never trained on, small enough for a 2-core CPU.

    python benchmarks/ood_compare.py [--shared ../shared/data] [--out /tmp/ood-compare] [--epochs 8] [--sizes 128]

Every variant trains the default architecture on the same small real set
(Advice Animals memes, ``--tiny-count`` CIFAR-style pictures, the BSD100
photos; ``+text`` variants add the nonmemes-text hard negatives; ``photos+``
variants train on every photo set and on neither modern memes nor text
non-memes, so one run gives both honest scores), template-grouped splits,
then is scored per folder with ``training.ood``: the test split of what it
trained on, and in full every folder it never saw (memes/modern/*,
nonmemes-text/* where left out, the other photo sets), plus one ROC-AUC of
every never-trained meme folder against every never-trained non-meme folder.
Prints one table, variants side by side, and writes it to OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.ood import build_inputs, real_folders  # noqa: E402

# name, fit, families trained on, training flags
VARIANTS = {
    "square": ("square", ("advice-animals", "tiny", "bsd"), ["--synth-memes", "0", "--synth-nonmemes", "0"]),
    "letterbox": ("letterbox", ("advice-animals", "tiny", "bsd"), ["--synth-memes", "0", "--synth-nonmemes", "0"]),
    "letterbox+synth": ("letterbox", ("advice-animals", "tiny", "bsd"), ["--synth-memes", "0.3",
                                                                         "--synth-nonmemes", "0"]),
    "letterbox+text": ("letterbox", ("advice-animals", "tiny", "bsd", "text"), ["--synth-memes", "0",
                                                                                "--synth-nonmemes", "0"]),
    "letterbox+text+synth": ("letterbox", ("advice-animals", "tiny", "bsd", "text"), ["--synth-memes", "0.3",
                                                                                      "--synth-nonmemes", "0"]),
    # every photo set, neither modern memes nor text non-memes: both honest scores from one run
    "photos+synth": ("letterbox", ("advice-animals", "tiny", "photos"), ["--synth-memes", "0.3",
                                                                         "--synth-nonmemes", "0"]),
    "photos+synth+textsynth": ("letterbox", ("advice-animals", "tiny", "photos"), ["--synth-memes", "0.3",
                                                                                   "--synth-nonmemes", "0.15"]),
    "photos+synth+textsynth seed 1": ("letterbox", ("advice-animals", "tiny", "photos"), [
        "--synth-memes", "0.3", "--synth-nonmemes", "0.15", "--seed", "1"]),
    "photos+synth0.5+textsynth0.3": ("letterbox", ("advice-animals", "tiny", "photos"), [
        "--synth-memes", "0.5", "--synth-nonmemes", "0.3"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("/tmp/ood-compare"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--tiny-count", type=int, default=500)
    p.add_argument("--sizes", default="128", help="training sizes (training.run --sizes); scoring is at 128")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--native", metavar="VARIANT", help="also score this variant's model at native size (SPP, long side "
                   "capped at --max-side) on the folders it never trained on")
    p.add_argument("--max-side", type=int, default=256)
    args = p.parse_args()
    from training.classifier import load_classifier

    args.out.mkdir(parents=True, exist_ok=True)
    folders = real_folders(args.shared)
    bsd = [f for f in folders if f.name == "photos/BSD100"]
    py = sys.executable
    results = {}
    for name in args.variants.split(","):
        fit, families, flags = VARIANTS[name]
        trained = [f for f in folders if f.family in families] + (bsd if "bsd" in families else [])
        inputs = build_inputs(trained, (), args.tiny_count)
        data = args.out / f"{fit}-{'+'.join(sorted(families))}.h5"
        if not data.exists():
            subprocess.run([py, "-m", "processing.build_h5", *inputs, "--fit", fit, "--group-by", "template",
                            "--out", str(data), "--no-progress"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        run = args.out / "runs" / name
        t0 = time.time()
        if not (run / "model.keras").exists():
            subprocess.run([py, "-m", "training.run", "--data", str(data), "--out", str(run), "--epochs",
                            str(args.epochs), "--patience", str(args.epochs), "--sizes", args.sizes, "--overwrite", "--verbose", "0", *flags],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.time() - t0
        model, pre = load_classifier(run)
        results[name] = score(model, pre, run, data, folders, {f.name for f in trained}) | {"train_s": round(seconds)}
        if name == args.native:
            results[f"{name} (native size)"] = native(model, pre, folders, {f.name for f in trained},
                                                      args.max_side) | {
                "train_s": round(seconds), "threshold": results[name]["threshold"],
                "test_accuracy": results[name]["test_accuracy"]}
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"{name}: done in {seconds:.0f} s", flush=True)
    table = side_by_side(results)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    return 0


def score(model, pre, run: Path, data: Path, folders, trained: set[str]) -> dict:
    from training.ood import score_run

    scores, _ = score_run(model, pre, folders, str(data), trained)
    test = json.loads((run / "report.json").read_text())
    return {"threshold": pre.threshold, "test_accuracy": test["accuracy"], "auc_unseen": unseen_auc(
        model, pre, folders, trained), "folders": {s.folder: [s.scope, s.correct, s.count] for s in scores}}


def unseen_auc(model, pre, folders, trained: set[str]) -> float | None:
    """ROC-AUC of every never-trained meme folder against every never-trained non-meme folder: no threshold."""
    from processing.schema import MEME
    from training.classifier import predict_array
    from training.evaluate import load_folders
    from training.metrics import roc_auc

    unseen = [f for f in folders if f.name not in trained and f.family != "tiny"]
    memes = [str(r) for f in unseen if f.label == MEME for r in f.roots]
    non_memes = [str(r) for f in unseen if f.label != MEME for r in f.roots]
    if not memes or not non_memes:
        return None
    x, labels, _, _ = load_folders(pre, memes, non_memes)
    return roc_auc(labels, predict_array(model, x, 64))


def native(model, pre, folders, trained: set[str], max_side: int) -> dict:
    """Folders never trained on, each image fed at its own aspect and size (evaluate --native-size)."""
    from processing.schema import MEME
    from training.evaluate import evaluate_folders
    from training.ood import score as score_folder

    out = {}
    for f in folders:
        if f.name in trained or f.family == "tiny":
            continue
        roots = [str(r) for r in f.roots]
        _, probs, *_ = evaluate_folders(model, pre, roots if f.label == MEME else [],
                                        [] if f.label == MEME else roots, native_max_side=max_side)
        s = score_folder(f.name, f.label, "all, never trained on", probs, pre.threshold)
        out[f.name] = [s.scope, s.correct, s.count]
    return {"folders": out}


def side_by_side(results: dict) -> str:
    names = list(results)
    folders = sorted({f for r in results.values() for f in r["folders"]})
    rows = ["| folder | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for f in folders:
        cells = []
        for n in names:
            scope, correct, count = results[n]["folders"].get(f, ("", 0, 0))
            cells.append(f"{correct}/{count} = {correct / count:.2f}" + (" (test split)" if scope == "test split" else "")
                         if count else "-")
        rows.append(f"| `{f}` | " + " | ".join(cells) + " |")
    rows.append("| threshold (chosen on val) | " + " | ".join(f"{results[n]['threshold']:.3f}" for n in names) + " |")
    rows.append("| test-split accuracy | " + " | ".join(f"{results[n]['test_accuracy']:.3f}" for n in names) + " |")
    rows.append("| AUC, never-trained memes vs never-trained non-memes | " + " | ".join(
        "-" if results[n].get("auc_unseen") is None else f"{results[n]['auc_unseen']:.3f}" for n in names) + " |")
    rows.append("| training seconds | " + " | ".join(str(results[n]["train_s"]) for n in names) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
