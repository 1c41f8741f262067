"""python -m training.evaluate MODEL (--data DATASET.h5 [--split test] | --memes DIR... --non-memes DIR...)

Scores a trained model on a dataset split, or on folders of labelled images
of any size preprocessed exactly as in training, and writes report.json with
accuracy, precision, recall, F1, ROC-AUC and the confusion matrix, plus PNGs
(ROC, reliability diagram, confusion matrix, sample predictions). The decision
threshold is the one stored with the model (chosen on the validation split by
``training.run``) unless ``--threshold`` overrides it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from processing.cliutil import ArgumentParser, UsageError, atomic_write_json, fraction, positive_int, run_main
from processing.decode import DEFAULT_MAX_PIXELS, decode_image
from processing.files import FOLDER, NOT_WRITABLE, escape_name, not_regular, read_capped, writable_folder
from processing.prepare import Options, prepare
from processing.reasons import Rejected
from processing.schema import MEME, NON_MEME, SPLIT_NAMES
from processing.sources import Skip, from_folder

from . import folder_arg, plots
from .classifier import check_model, load_classifier, min_native_side, native_input, predict_array, predict_probs
from .h5file import DatasetError, open_dataset, read_sources
from .metrics import binary_report, expected_calibration_error, format_rates, rates_by_group, reliability_bins
from .preprocess import Preprocess
from .realdata import family_of_source

GRID = 9


def evaluate_split(model, data: str, split: str, batch_size: int = 64):
    from .data import H5Batches

    ds = H5Batches(data, split, batch_size)
    probs = predict_probs(model, (ds[i][0] for i in range(len(ds))))
    grid = ds[0][0][:GRID]
    return ds.labels.astype(int), probs, grid, read_sources(data, ds.indices)


def by_source(sources: list[str], y, probs, threshold: float) -> dict:
    """Meme recall or non-meme specificity per source and per family (``realdata.family_of_source``): which
    kinds of picture the figures above hide."""
    families = [family_of_source(s) for s in sources]
    return {"by_family": rates_by_group(families, y, probs, threshold),
            "by_source": rates_by_group(sources, y, probs, threshold)}


def folder_jobs(memes: list[str], non_memes: list[str]):
    return [j for d in memes for j in from_folder(d, MEME)] + [j for d in non_memes for j in from_folder(d, NON_MEME)]


def evaluate_folders(model, pre: Preprocess, memes: list[str], non_memes: list[str], batch_size: int = 64,
                     native_max_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Labelled folders through the training preprocessing; unreadable files are counted.

    With ``native_max_side`` each image is fed at its own aspect and size (long
    side capped), one at a time, through the SPP head; the grid still shows
    the fitted square.
    """
    if native_max_side:
        x, labels, probs, skipped = native_folders(model, pre, memes, non_memes, native_max_side, max_pixels)
    else:
        x, labels, _, skipped = load_folders(pre, memes, non_memes, max_pixels)
        probs = predict_array(model, x, batch_size)
    order = np.random.default_rng(0).permutation(len(x))[:GRID]
    return labels, probs, x[order], labels[order], probs[order], skipped


def native_folders(model, pre: Preprocess, memes: list[str], non_memes: list[str], max_side: int,
                   max_pixels: int = DEFAULT_MAX_PIXELS):
    """(fitted squares, labels, probabilities, skipped reasons): each image decoded once, fed at its own aspect.

    One image per batch (each has its own shape); an image too thin for the
    model at native size is skipped as ``unsupported_size``, as by predict.
    """
    min_side = min_native_side(model)
    images, labels, probs, skipped = [], [], [], {}
    for job in folder_jobs(memes, non_memes):
        try:
            if isinstance(job, Skip):
                raise Rejected(job.reason)
            rgb = decode_image(read_capped(job.path), max_pixels=max_pixels).rgb
            pixels = native_input(rgb, max_side, min_side)
        except Rejected as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        images.append(pre.apply(rgb))
        labels.append(job.label)
        probs.append(predict_probs(model, [pixels[None]])[0])
    if not images:
        raise UsageError("no readable images in the given folders")
    return np.stack(images), np.array(labels), np.array(probs), skipped


def load_folders(pre: Preprocess, memes: list[str], non_memes: list[str], max_pixels: int = DEFAULT_MAX_PIXELS):
    """(fitted images, labels, paths, skipped reasons) of labelled folders; UsageError if none is readable.

    Files that cannot be used (special files, unreadable, not images, ...) are counted by reason."""
    options = Options(fit=pre.fit, size=pre.size, min_side=1, max_pixels=max_pixels)
    images, labels, paths, skipped = [], [], [], {}
    for job in folder_jobs(memes, non_memes):
        row = None if isinstance(job, Skip) else prepare(job, options)
        reason = job.reason if row is None else row.reason
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        images.append(row.image)
        labels.append(job.label)
        paths.append(job.path)
    if not images:
        raise UsageError("no readable images in the given folders")
    return np.stack(images), np.array(labels), paths, skipped


def write_report(out: Path, y, probs, grid, grid_y, grid_p, threshold: float, title: str, extra: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    bins = reliability_bins(y, probs)
    report = {**binary_report(y, probs, threshold), "reliability_bins": bins,
              "expected_calibration_error": expected_calibration_error(bins), **extra}
    atomic_write_json(out / "report.json", report)
    plots.roc(y, probs, report["roc_auc"], out / "roc.png", title=f"ROC: {title}")
    plots.reliability(bins, report["expected_calibration_error"], out / "reliability.png", title=f"reliability: {title}")
    plots.confusion(report["confusion_matrix"]["rows_true_cols_pred"], out / "confusion.png", title=title)
    plots.prediction_grid(grid, grid_y, grid_p, out / "predictions.png", threshold)
    return report


def format_summary(report: dict) -> str:
    auc = report["roc_auc"]
    (tn, fp), (fn, tp) = report["confusion_matrix"]["rows_true_cols_pred"]
    return (f"{report['count']} images ({report['memes']} memes): accuracy {report['accuracy']:.4f}, "
            f"precision {report['precision']:.4f}, recall {report['recall']:.4f}, F1 {report['f1']:.4f}, "
            f"ROC-AUC {'n/a' if auc is None else f'{auc:.4f}'}; confusion [[tn {tn}, fp {fp}], [fn {fn}, tp {tp}]] "
            f"at threshold {report['threshold']:.4f}")


def check_out_folder(out: Path) -> None:
    """UsageError unless ``out`` is a folder to write in or can be made one (``processing.files.writable_folder``).

    Checked before the model is loaded, so a bad --out is not found only after all the scoring.
    """
    place, problem = writable_folder(out)
    if problem:
        subject = f"--out {escape_name(str(out))}" + ("" if place == out else
                                                      f" cannot be made: {escape_name(str(place))}")
        raise UsageError(f"{subject} is {problem}{'' if problem == NOT_WRITABLE else ', not a folder'}: give a "
                         f"folder for report.json and the PNGs")


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    p.add_argument("model", help="run folder (with model.keras) or a .keras file")
    p.add_argument("--data", help="HDF5 dataset from processing.build_h5")
    p.add_argument("--split", default="test", choices=SPLIT_NAMES)
    p.add_argument("--memes", action="append", default=[], metavar="DIR", help="folder of memes; repeatable")
    p.add_argument("--non-memes", action="append", default=[], metavar="DIR", help="folder of non-memes; repeatable")
    p.add_argument("--threshold", type=fraction, help="meme probability threshold (default: the one stored with the model)")
    p.add_argument("--native-size", action="store_true",
                   help="with folders: feed each image at its own aspect and size (SPP) instead of the fit")
    p.add_argument("--max-side", type=positive_int, default=1024, help="with --native-size, cap the long side (default 1024)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"an image of more than N pixels is a decompression_bomb (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--out", type=folder_arg, help="write report.json and PNGs here")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if bool(args.data) == bool(args.memes or args.non_memes):
        raise UsageError("give either --data, or --memes/--non-memes folders")
    if args.native_size and args.data:
        raise UsageError("--native-size works on --memes/--non-memes folders (a dataset holds fitted squares)")
    if args.out:
        check_out_folder(args.out)
    for option, folders in (("--memes", args.memes), ("--non-memes", args.non_memes)):
        for d in folders:
            kind = not_regular(d) if d else "an empty path"
            if kind != FOLDER:
                raise UsageError(f"{option} {escape_name(d)!r} is {kind}: give a folder of images")
    if args.data:
        try:
            with open_dataset(args.data) as f:
                side = f["images"].shape[2]
        except DatasetError as exc:
            raise UsageError(str(exc)) from None
        _, pre = check_model(args.model)
        if side != pre.size:
            raise UsageError(f"{escape_name(args.data)} holds {side}-px images but the model takes {pre.size} px "
                             f"(its preprocess.json): evaluate on a dataset built with build_h5 --side {pre.size}")
    model, pre = load_classifier(args.model)
    threshold = pre.with_threshold(args.threshold).threshold
    try:
        if args.data:
            y, probs, grid, sources = evaluate_split(model, args.data, args.split, args.batch_size)
            grid_y, grid_p = y[:GRID], probs[:GRID]
            extra = {"data": args.data, "split": args.split, **by_source(sources, y, probs, threshold)}
        else:
            y, probs, grid, grid_y, grid_p, skipped = evaluate_folders(
                model, pre, args.memes, args.non_memes, args.batch_size, args.max_side if args.native_size else None,
                args.max_pixels)
            extra = {"meme_dirs": [escape_name(d) for d in args.memes],
                     "non_meme_dirs": [escape_name(d) for d in args.non_memes], "skipped": skipped,
                     "input": "native size" if args.native_size else f"fit {pre.fit}"}
    except DatasetError as exc:
        raise UsageError(str(exc)) from None
    if args.out:
        report = write_report(args.out, y, probs, grid, grid_y, grid_p, threshold, args.split if args.data else "folders",
                              extra)
    else:
        report = {**binary_report(y, probs, threshold), **extra}
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(format_summary(report))
        if args.data:
            print(f"by family (meme recall or specificity): {format_rates(report['by_family'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("training.evaluate", main))
