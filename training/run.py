"""python -m training.run [--data data/dataset.h5] [--out runs/<timestamp>]

Trains the SPP classifier on the ``train`` split, streaming from HDF5,
early-stops on ``val``, checkpoints every epoch (``--resume`` continues a
killed run), chooses the decision threshold on ``val`` (see
``training.metrics.choose_threshold``; saved in preprocess.json), then
evaluates on ``test`` and writes report.json and PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from processing import paths
from processing.cliutil import (ArgumentParser, UsageError, atomic_write_json, choice_list, count, distinct_list,
                                fraction, positive_float, positive_int, run_main)

from . import ARCHS, DEFAULT_ARCH, DEPRECATED_ARCHS, canonical_arch, folder_arg
from .h5file import DatasetError, open_dataset, split_names, untrainable
from .parallel import cluster_from, fingerprint, setup
from .preprocess import MAX_SIZE, MIN_SIZE, Preprocess
from .scripts import SCRIPT_SHARES
from .synth import MAX_SYNTH, STYLES

CHECKPOINT = "checkpoint.keras"   # the last finished epoch, model + optimizer state
BEST = "best.keras"               # lowest validation loss so far
STATE = "state.json"
# The defaults are the winners of the grouped cross-validation (python -m training.cv; README "Cross-validation
# by source"): a plain fine-tune of the pretrained trunk beat the synthesis, degradation, warm-up and crops of the
# earlier defaults on every pooled figure (ROC-AUC 0.945 against 0.920 over two seeds).
EPOCHS = {"lite0": 3, "memenet": 20, "original": 20}   # lite0: the CV's 3; a scratch CNN early-stops on val
SYNTH_MEMES = 0.0                 # --synth-memes 0.3 (the old default): the CV's plain-synth variant
SYNTH_NONMEMES = 0.0
WARMUP_EPOCHS = 0                 # lite0: epochs that train the head alone on the frozen ImageNet trunk
TRUNK_LR_SCALE = 0.1              # lite0: once unfrozen, the trunk trains at this fraction of --lr ...
HEAD_LR_SCALE = 1.0               # ... and the head at this fraction
SPP_LEVELS = (1,)                 # one level (global pooling): [1,2,4] was no better on the CV (README)
BALANCE_FAMILIES = 0.0            # every row weighs alike within its label
TRAIN_BN = False                  # the trunk's batch-norm layers keep their ImageNet statistics
LABEL_SMOOTHING = 0.0
REENCODE = 0.0


def parse_args(argv=None):
    p = ArgumentParser(prog="python -m training.run", description=__doc__)
    p.add_argument("--data", default=str(paths.DATASET),
                   help=f"HDF5 dataset from processing.build_h5 (default {paths.DATASET})")
    p.add_argument("--out", type=folder_arg,
                   help=f"run folder for model, logs and report (default: a new {paths.RUNS}/<UTC timestamp>)")
    p.add_argument("--arch", choices=(*ARCHS, *DEPRECATED_ARCHS), default=DEFAULT_ARCH,
                   help=f"lite0 (EfficientNet-Lite0 pretrained on ImageNet under the SPP head, fine-tuned), memenet "
                        f"(learned from scratch) or original (the original project's network; 'seed' is its old "
                        f"name) (default {DEFAULT_ARCH}: see the README's Results)")
    p.add_argument("--epochs", type=positive_int,
                   help="epochs (default: " + ", ".join(f"{a} {n}" for a, n in EPOCHS.items()) + ")")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adamw")
    p.add_argument("--warmup-epochs", type=count, default=WARMUP_EPOCHS,
                   help=f"lite0: train only the head on the frozen pretrained trunk for this many epochs, then "
                        f"unfreeze the trunk (its batch-norm layers stay frozen unless --train-bn) (default {WARMUP_EPOCHS})")
    p.add_argument("--trunk-lr", type=positive_float, default=TRUNK_LR_SCALE, metavar="SCALE",
                   help=f"lite0: once the trunk is unfrozen, train at SCALE x --lr (default {TRUNK_LR_SCALE})")
    p.add_argument("--head-lr", type=positive_float, default=HEAD_LR_SCALE, metavar="SCALE",
                   help=f"lite0: once the trunk is unfrozen, train the head at SCALE x --lr (default {HEAD_LR_SCALE};"
                        f" the earlier default was the trunk's rate, {TRUNK_LR_SCALE})")
    p.add_argument("--spp-levels", type=distinct_list(positive_int, "1,2,4"), default=SPP_LEVELS, metavar="L,L,...",
                   help="grid sizes of the spatial pyramid pooling head (default "
                        f"{','.join(map(str, SPP_LEVELS))}: one level, global average pooling; e.g. 1,2,4)")
    p.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=TRAIN_BN,
                   help="lite0: once the trunk trains, train its batch-norm layers too (their statistics re-estimated "
                        "from the batches) instead of keeping ImageNet's (default: kept)")
    p.add_argument("--label-smoothing", type=fraction, default=LABEL_SMOOTHING, metavar="S",
                   help=f"move the one-hot targets S towards uniform (default {LABEL_SMOOTHING})")
    p.add_argument("--seed", type=count, default=0)
    p.add_argument("--patience", type=positive_int, default=5, help="early stopping patience (epochs without val_loss gain)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="flips and small crops inside the letterbox bands")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=False,
                   help="with --augment: small crops too (default off: flips only)")
    p.add_argument("--degrade-memes", type=fraction, default=0.0, metavar="P",
                   help="pass a meme through 32x32 and back with probability P, against blockiness as a label "
                        "shortcut (default 0: off)")
    p.add_argument("--smooth-tiny", type=fraction, default=1.0, metavar="P",
                   help="re-upsample a 32px non-meme bilinearly instead of by repetition with probability P "
                        "(default 1: always)")
    p.add_argument("--degrade-all", type=fraction, default=0.0, metavar="P",
                   help="pass a training picture of either label through 32x32 and back bilinearly with probability "
                        "P, the way the 32-px pictures reach the input side, so that a blur names neither label "
                        "(default 0: off)")
    p.add_argument("--reencode", type=fraction, default=REENCODE, metavar="P",
                   help="with probability P a training picture of either label is shrunk (to 50-100%% of its side) "
                        f"and back, then re-encoded as JPEG at quality 30-95: format is not a label (default {REENCODE})")
    p.add_argument("--balance-families", type=fraction, default=BALANCE_FAMILIES, metavar="POWER",
                   help="weigh each training row by n**-POWER, n the rows of its label in its family (a shared-data "
                        "family, else its source), so small families count more; each label keeps its total weight "
                        f"(0: off, 1: every family alike; default {BALANCE_FAMILIES})")
    p.add_argument("--synth-memes", type=fraction, default=SYNTH_MEMES, metavar="RATIO",
                   help="turn this fraction of each training batch's non-memes into memes by captioning another "
                        f"non-meme of the batch (training.synth: the same picture seen as both; at most {MAX_SYNTH}; "
                        f"default {SYNTH_MEMES}; 0 turns it off)")
    p.add_argument("--synth-nonmemes", type=fraction, default=SYNTH_NONMEMES, metavar="RATIO",
                   help="redraw this fraction of each training batch's non-memes as designed text that is not a meme "
                        "(posters, app screens, pages: training.synth.text_nonmeme), so text alone does not make a "
                        "meme (taken from the non-memes that captioning left untouched, so at most "
                        f"1 - 2 x --synth-memes; default {SYNTH_NONMEMES}; 0 turns it off)")
    p.add_argument("--synth-styles", type=choice_list(STYLES), default=STYLES, metavar="NAMES",
                   help=f"the caption styles --synth-memes draws from ('all', or some of {','.join(STYLES)}; "
                        "default all)")
    p.add_argument("--synth-scripts", type=choice_list(tuple(SCRIPT_SHARES)), default=tuple(SCRIPT_SHARES),
                   metavar="NAMES",
                   help="the scripts the synthesis writes captions and designed text in, drawn by their shares in "
                        f"training/scripts.py ('all', or some of {','.join(SCRIPT_SHARES)}; default all)")
    p.add_argument("--sizes", help="training sizes, one per epoch in turn (e.g. 128,96,160; default: the dataset's "
                                   "side, build_h5 --side)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                   help="store with the model the threshold of best balanced accuracy on the val split (within one "
                        "val image of the best: the one closest to 0.5) instead of 0.5 (default off: 0.5)")
    p.add_argument("--workers", type=positive_int, default=2, help="reader threads")
    par = p.add_argument_group("several devices or machines (KERAS_BACKEND=jax; see training/parallel.py)")
    par.add_argument("--devices", type=devices_arg, default="all", metavar="N|all",
                     help="local devices to train on, data parallel (default all; --batch-size is the global batch)")
    par.add_argument("--coordinator", metavar="HOST:PORT",
                     help="process 0's address, the same for every process (or KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    par.add_argument("--num-processes", type=positive_int, metavar="N", help="processes in the cluster")
    par.add_argument("--process-id", type=count, metavar="I", help="this process, 0 to N-1 (0 writes the run folder)")
    par.add_argument("--coordinator-timeout", type=positive_int, default=60, metavar="S",
                     help="seconds to wait for every process to join before giving up (default 60)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing run folder")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    args = p.parse_args(argv)
    args.arch = canonical_arch(args.arch)
    args.epochs = args.epochs or EPOCHS[args.arch]
    if args.out is None:
        if args.resume:
            p.error("--resume needs the run folder: give --out")
        args.out = paths.RUNS / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return args


def phases(args, pretrained: bool) -> list[tuple[int, int, float, bool | None]]:
    """(first epoch, end epoch, learning rate, trunk trainable) of each training phase.

    A model learned from scratch trains in one phase at ``--lr`` (trunk
    ``None``: nothing to freeze). A pretrained trunk first stays frozen for
    ``--warmup-epochs`` while the new head learns at ``--lr`` (a random head's
    large gradients would otherwise wreck the ImageNet features), then the
    trunk trains at ``--trunk-lr`` x ``--lr`` and the head at ``--head-lr``
    x ``--lr``, with the trunk's batch-norm layers frozen unless ``--train-bn``
    (``training.model.set_trunk_training``). The defaults have no warm-up.
    """
    if not pretrained:
        return [(0, args.epochs, args.lr, None)]
    warmup = min(args.warmup_epochs, args.epochs)
    out = [(0, warmup, args.lr, False)] if warmup else []
    if warmup < args.epochs:
        out.append((warmup, args.epochs, args.lr * args.trunk_lr, True))
    return out


def devices_arg(text: str) -> str:
    return text if text == "all" else str(positive_int(text))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < MIN_SIZE or max(sizes) > MAX_SIZE:
        raise UsageError(f"--sizes takes sizes from {MIN_SIZE} to {MAX_SIZE}, e.g. 128 or 128,96,160 (got {text!r})")
    return sizes


def head_scale(model, args, trunk_trainable) -> tuple[tuple[str, ...], float]:
    """(paths of the head's variables, their rate as a multiple of the phase's) once the trunk trains."""
    from .model import pretrained_trunk

    if not trunk_trainable or args.head_lr == args.trunk_lr:
        return (), 1.0
    trunk = {id(v) for v in pretrained_trunk(model).variables}
    return tuple(v.path for v in model.trainable_variables if id(v) not in trunk), args.head_lr / args.trunk_lr


def make_checkpointer(out: Path):
    import keras

    class AtomicCheckpoint(keras.callbacks.Callback):
        """Saves checkpoint/best models via temp file + rename, then the epoch state."""

        def __init__(self, best_loss):
            super().__init__()
            self.best_loss = best_loss

        def _save(self, name: str):
            tmp = out / f".{name}.tmp.keras"
            self.model.save(tmp)
            os.replace(tmp, out / name)

        def on_epoch_end(self, epoch, logs=None):
            val = (logs or {}).get("val_loss")
            if val is not None and val < self.best_loss:
                self.best_loss = float(val)
                self._save(BEST)
            self._save(CHECKPOINT)
            atomic_write_json(out / STATE, {"epoch": epoch, "best_val_loss": self.best_loss})

    return AtomicCheckpoint


def prepare_out(args) -> dict | None:
    """The saved state when resuming, else None; refuses to clobber a run."""
    state_path = args.out / STATE
    if args.resume:
        if not state_path.exists() or not (args.out / CHECKPOINT).exists():
            raise UsageError(f"nothing to resume in {args.out}: no {CHECKPOINT} (start without --resume)")
        return json.loads(state_path.read_text())
    if args.out.exists() and any(args.out.iterdir()):
        if not args.overwrite:
            raise UsageError(f"{args.out} already holds a run: pass --resume to continue it or --overwrite")
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return None


def train(args) -> dict:
    """Train on the dataset's ``train`` split, early-stop on ``val``, then report on ``test``.

    Writes the run folder (checkpoints, ``model.keras``, ``preprocess.json``,
    ``log.csv``, ``report.json``, PNGs) and returns the test report. Raises
    UsageError for arguments or data it cannot use.
    """
    if not 0 <= args.synth_memes <= MAX_SYNTH:
        raise UsageError(f"--synth-memes takes a fraction from 0 to {MAX_SYNTH}")
    sizes = parse_sizes(args.sizes) if args.sizes is not None else None
    cluster = cluster_from(args.coordinator, args.num_processes, args.process_id)
    try:
        with open_dataset(args.data) as f:
            fit = str(f.attrs.get("fit", "square"))
            height, size = f["images"].shape[1:3]
            labels, split = f["labels"][:], f["split"][:]
            problem = untrainable(labels, split, split_names(f))
            dataset_id = fingerprint(f["images"].shape, labels, split, str(f.attrs.get("params", "")))
    except DatasetError as exc:
        raise UsageError(str(exc)) from None
    if height != size or not MIN_SIZE <= size <= MAX_SIZE:
        # the model is saved as taking this side (preprocess.json), which must be one a model may declare
        raise UsageError(f"{args.data}: its images are {size}x{height}; training takes square images from "
                         f"{MIN_SIZE} to {MAX_SIZE} pixels a side: rebuild it with python -m processing.build_h5")
    if problem:
        raise UsageError(f"{args.data}: {problem}")
    sizes = sizes or [int(size)]   # by default the dataset's side (build_h5 --side): the model is saved as taking it

    import keras

    topology = setup(args.devices, args.batch_size, cluster, dataset_id, args.coordinator_timeout)
    state = prepare_out(args) if topology.writes else read_state(args)
    if topology.writes:
        print(f"training.run: run folder {args.out}", file=sys.stderr)
    if topology.devices > 1:
        print(f"training.run: data parallel on {topology.devices} devices in {topology.processes} process(es); "
              f"this is process {topology.process_id}", file=sys.stderr)

    from .data import H5Batches
    from .model import build_model, pretrained_trunk, set_trunk_training
    from .optim import make_loss, make_optimizer

    try:
        keras.utils.set_random_seed(args.seed)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()
        train_ds = H5Batches(args.data, "train", args.batch_size, shuffle=True, seed=args.seed, augment=args.augment,
                             crop=args.crop, degrade_memes=args.degrade_memes, smooth_tiny=args.smooth_tiny,
                             degrade_all=args.degrade_all, reencode=args.reencode,
                             synth_memes=args.synth_memes, synth_nonmemes=args.synth_nonmemes,
                             synth_styles=args.synth_styles, synth_scripts=args.synth_scripts, fit=fit, sizes=sizes,
                             balance_classes=True, balance_families=args.balance_families,
                             shard=topology.shard, pad_to=topology.devices,
                             workers=args.workers, use_multiprocessing=False)
        # validation gets the training's synthesis, the same every epoch: the epoch kept is then the one that
        # best tells memes in every synthesised format from designed text, not only the real val templates
        # (the threshold is still chosen on the real val split alone: finish())
        val_ds = H5Batches(args.data, "val", args.batch_size, seed=args.seed, synth_memes=args.synth_memes,
                           synth_nonmemes=args.synth_nonmemes, synth_styles=args.synth_styles,
                           synth_scripts=args.synth_scripts, fit=fit, same_every_epoch=True,
                           shard=topology.shard, pad_to=topology.devices, workers=args.workers,
                           use_multiprocessing=False)
    except DatasetError as exc:
        raise UsageError(str(exc)) from None

    initial_epoch = 0
    if state is not None:
        model = keras.saving.load_model(args.out / CHECKPOINT)
        initial_epoch = state["epoch"] + 1
        train_ds.set_epoch(initial_epoch)
        best = state["best_val_loss"]
        print(f"resuming {args.out} at epoch {initial_epoch + 1}", file=sys.stderr)
    else:
        model = build_model(args.arch, levels=args.spp_levels)
        best = float("inf")
    if topology.writes:
        Preprocess(fit=fit, size=int(size), arch=args.arch).save(args.out)
        atomic_write_json(args.out / "args.json",
                          {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    # saving is collective on several processes: each saves, the others into a scratch folder of their own
    scratch = None if topology.writes else Path(tempfile.mkdtemp(prefix=f"training-run-process{topology.process_id}-"))
    writers = [make_checkpointer(scratch or args.out)(best)]
    t0 = time.time()
    for start, end, lr, trunk_trainable in phases(args, pretrained_trunk(model) is not None):
        if end <= initial_epoch:
            continue
        if initial_epoch <= start:    # a phase begins here (not resumed inside it): its layers and optimizer
            if trunk_trainable is not None:
                set_trunk_training(pretrained_trunk(model), trunk_trainable, args.train_bn)
            model.compile(optimizer=make_optimizer(args.optimizer, lr, *head_scale(model, args, trunk_trainable)),
                          loss=make_loss(args.label_smoothing), metrics=["accuracy"])
            if trunk_trainable is not None:
                print(f"epochs {start + 1}-{end}: {'whole model' if trunk_trainable else 'head only'} at lr {lr:g}",
                      file=sys.stderr)
        if topology.writes:   # the logger first: a fresh one per phase, appending after the first
            writers = [keras.callbacks.CSVLogger(str(args.out / "log.csv"), append=initial_epoch > 0 or start > 0),
                       writers[-1]]
        callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience), *writers]
        history = model.fit(train_ds, validation_data=val_ds, epochs=end, initial_epoch=max(start, initial_epoch),
                            callbacks=callbacks, verbose=args.verbose)
        if model.stop_training and len(history.epoch) < end - max(start, initial_epoch):
            break                     # early-stopped: the later phases would start from a stale model
    train_seconds = time.time() - t0
    keras.distribution.set_distribution(None)   # the report is process 0's alone, on its own device
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"training.run: process {topology.process_id} done; process 0 writes {args.out}", file=sys.stderr)
        return None
    return finish(args, train_seconds, topology.describe(args.batch_size))


def read_state(args) -> dict | None:
    """A process other than 0 writes nothing: with --resume it reads the state process 0 left."""
    if not args.resume:
        return None
    if not (args.out / STATE).exists() or not (args.out / CHECKPOINT).exists():
        raise UsageError(f"nothing to resume in {args.out}: no {CHECKPOINT} (every process needs process 0's "
                         "run folder: a shared filesystem, or a copy)")
    return json.loads((args.out / STATE).read_text())


def finish(args, train_seconds: float, topology: dict) -> dict:
    """Best model -> model.keras, then the test-split report and plots."""
    from . import plots
    from .classifier import load_classifier
    from .evaluate import GRID, by_source, evaluate_split, format_summary, write_report
    from .metrics import balanced_accuracy, choose_threshold, format_rates

    best = args.out / (BEST if (args.out / BEST).exists() else CHECKPOINT)
    shutil.copyfile(best, args.out / ".model.keras.tmp")
    os.replace(args.out / ".model.keras.tmp", args.out / "model.keras")
    model, pre = load_classifier(args.out)
    calibration = {"threshold_rule": "default"}
    if args.calibrate:
        val_y, val_probs, _, _ = evaluate_split(model, args.data, "val", args.batch_size)
        pre = pre.with_threshold(choose_threshold(val_y, val_probs))
        pre.save(args.out)
        calibration = {"threshold_rule": "max balanced accuracy on val; within one val image of it, closest to 0.5",
                       "val_balanced_accuracy": balanced_accuracy(val_y, val_probs, pre.threshold)}
    y, probs, grid, sources = evaluate_split(model, args.data, "test", args.batch_size)
    report = write_report(args.out, y, probs, grid, y[:GRID], probs[:GRID], pre.threshold, "test split",
                          {"data": str(args.data), "split": "test", "arch": args.arch, **calibration, **topology,
                           "train_seconds": round(train_seconds, 1),
                           "epochs_run": json.loads((args.out / STATE).read_text())["epoch"] + 1,
                           **by_source(sources, y, probs, pre.threshold)})
    plots.learning_curves(args.out / "log.csv", args.out / "learning_curves.png")
    print(f"test: {format_summary(report)}")
    print(f"test by family (meme recall or specificity): {format_rates(report['by_family'])}")
    print(f"model: {args.out / 'model.keras'}; report: {args.out / 'report.json'}; plots: {args.out}/*.png")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except DatasetError as exc:   # the images read while training: a damaged chunk, a failed checksum
        raise UsageError(str(exc)) from None
    return 0


if __name__ == "__main__":
    sys.exit(run_main("training.run", main))
