"""Per-folder scores on real data: meme recall or non-meme specificity, with counts.

Every figure the report used to give came from pictures like the training
ones. This module scores each real folder separately: a folder that was in
training only on its held-out test split (rows of the dataset's ``test``
split that came from it), a folder left out of training in full. The folders
are those of ``../shared/data`` (see its MANIFEST.md), found by
``real_folders``; ``build_inputs`` turns them into ``processing.build_h5``
arguments so that ``--group-by template`` groups only real templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from processing.schema import MEME, SPLIT_NAMES
from processing.sources import folder_source

from .realdata import NON_MEME_PREFIX, discover

FAMILIES = ("advice-animals", "modern", "world", "text", "photos", "tiny")   # "text": every text-bearing non-meme
GRID_ERRORS = 9        # the most instructive errors shown in errors.png
ERRORS_PER_FOLDER = 2  # so the grid shows several folders' failures, not one folder's


@dataclass(frozen=True)
class Folder:
    """One real folder of ../shared/data, scored on its own row of the table."""
    name: str                  # path under the shared data folder, e.g. memes/modern/devops
    label: int
    roots: tuple[Path, ...]    # the folders given to build_h5 (one per category, so no category is one group)
    family: str                # what a leave-one-source-out run leaves out: FAMILIES

    @property
    def sources(self) -> tuple[str, ...]:
        """The ``source`` values of its rows in a dataset."""
        return tuple(folder_source(root, tiny=self.family == "tiny") for root in self.roots)


TEMPLATE_FAMILIES = ("advice-animals",)   # memes/<family>/<base meme>/: subfolders are templates (MANIFEST.md)


def table_family(family: str) -> str:
    """The FAMILIES name of a ``training.realdata`` family: world2 -> world, nonmemes-text3 -> text."""
    if family.startswith(NON_MEME_PREFIX):
        return "text"
    return family.rstrip("0123456789")


def real_folders(shared: Path) -> list[Folder]:
    """The real folders of the shared data (found by ``training.realdata.discover``), one row per kind.

    A row is the folder right below its family (``memes/world/hindi``,
    ``nonmemes-text2/charts``, ``photos/BSD100``, ``tiny/cifar10-test``); its
    roots are the source folders below it, each a source of its own, split in
    the same proportions as every other (a kind of one repository would
    otherwise lie wholly in one split: no held-out rows). The groups of
    memes/modern and the movie-poster genres are categories, not templates,
    and are split file by file; exact duplicates still share a split (by
    SHA-256) and near-duplicates too (``processing.neardup``). A family of
    TEMPLATE_FAMILIES is one row with one root whose subfolders are templates,
    for ``--group-by template``.
    """
    shared = Path(shared)
    rows: dict[str, tuple[int, list[Path], str]] = {}
    for s in discover(shared):
        parts = s.name.split("/")
        depth = 2 if s.label == MEME and s.family in TEMPLATE_FAMILIES else 3 if s.label == MEME else 2
        name = "/".join(parts[:depth])
        label, roots, family = rows.setdefault(name, (s.label, [], table_family(s.family)))
        root = shared / name if s.family in TEMPLATE_FAMILIES else s.path
        if root not in roots:
            roots.append(root)
    return [Folder(name, label, tuple(roots), family) for name, (label, roots, family) in rows.items()]


def build_inputs(folders: list[Folder], leave_out: tuple[str, ...] = (), tiny_count: int = 1000) -> list[str]:
    """build_h5 arguments for every folder except the families in ``leave_out``."""
    args = []
    for f in folders:
        if f.family in leave_out:
            continue
        for root in f.roots:
            if f.family == "tiny":   # tiny_count in all, shared by its folders (CIFAR classes)
                args += ["--tiny", str(root), "--tiny-count", str(max(1, tiny_count // len(f.roots)))]
            else:
                args += ["--memes" if f.label == MEME else "--non-memes", str(root)]
    return args


@dataclass(frozen=True)
class Score:
    """Meme recall (a meme folder) or non-meme specificity (a non-meme folder) of one folder."""
    folder: str
    label: int
    scope: str       # "test split" (the folder was trained on) or "all, never trained on"
    count: int
    correct: int

    @property
    def rate(self) -> float | None:
        return self.correct / self.count if self.count else None

    @property
    def metric(self) -> str:
        return "meme recall" if self.label == MEME else "non-meme specificity"

    def to_dict(self) -> dict:
        return {**vars(self), "rate": self.rate, "metric": self.metric}


def score(folder: str, label: int, scope: str, probs, threshold: float) -> Score:
    """Count of images and of those on the right side of ``threshold``."""
    p = np.asarray(probs, dtype=float)
    correct = int((p >= threshold).sum()) if label == MEME else int((p < threshold).sum())
    return Score(folder, label, scope, int(len(p)), correct)


def split_scores(folders: list[Folder], sources, labels, probs, threshold: float) -> list[Score]:
    """Per-folder scores on a dataset split: rows are matched to folders by their source."""
    sources = np.asarray(sources)
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    out = []
    for f in folders:
        rows = np.isin(sources, f.sources) & (labels == f.label)
        if rows.any():
            out.append(score(f.name, f.label, "test split", probs[rows], threshold))
    return out


def markdown_table(scores_by_run: dict[str, list[Score]]) -> str:
    """One row per (run, folder): what was measured on which images, with counts."""
    rows = ["| run | folder | images | measure | correct | rate |", "|---|---|---|---|---|---|"]
    for run, scores in scores_by_run.items():
        for s in scores:
            rate = "n/a" if s.rate is None else f"{s.rate:.3f}"
            rows.append(f"| `{run}` | `{s.folder}` | {s.scope} | {s.metric} | {s.correct}/{s.count} | {rate} |")
    return "\n".join(rows)


def instructive_errors(mistakes: list[tuple[str, int, float, np.ndarray]], n: int = GRID_ERRORS,
                       per_folder: int = ERRORS_PER_FOLDER):
    """The most confident of the (folder, label, probability, image) mistakes, at most ``per_folder`` per folder.

    Confidence in the wrong answer: 1 - p for a meme called non-meme, p for a non-meme called meme.
    """
    ranked = sorted(mistakes, key=lambda c: -((1 - c[2]) if c[1] == MEME else c[2]))
    taken, per = [], {}
    for c in ranked:
        if per.get(c[0], 0) < per_folder:
            taken.append(c)
            per[c[0]] = per.get(c[0], 0) + 1
        if len(taken) == n:
            break
    return taken


def score_run(model, pre, folders: list[Folder], data: str, trained: set[str], batch_size: int = 64):
    """Scores of one trained model: the test split for folders it trained on, the whole folder for the rest.

    Returns (scores, error candidates) where candidates are (folder, label,
    probability, fitted image) of every misclassified image.
    """
    import h5py

    from .data import H5Batches
    from .classifier import predict_array, predict_probs
    from .evaluate import load_folders

    ds = H5Batches(data, SPLIT_NAMES[2], batch_size)
    with h5py.File(data, "r") as f:
        sources = np.array([s.decode() for s in f["source"][:][ds.indices]])
    errors, batch_probs = [], []
    for i in range(len(ds)):   # one pass over the test split: probabilities and mistakes together
        x, y = ds[i][:2]
        p = predict_probs(model, [x])
        batch_probs.append(p)
        src = sources[i * batch_size:(i + 1) * batch_size]
        for k in np.flatnonzero((p >= pre.threshold) != (y == MEME)):
            name = next((f.name for f in folders if src[k] in f.sources), src[k])
            errors.append((name, int(y[k]), float(p[k]), x[k]))
    probs = np.concatenate(batch_probs) if batch_probs else np.zeros(0)
    scores = split_scores([f for f in folders if f.name in trained], sources, ds.labels, probs, pre.threshold)
    for f in folders:
        if f.name in trained or f.family == "tiny":   # 10,000 CIFAR pictures: scored on the test split only
            continue
        x, _, _, _ = load_folders(pre, [str(r) for r in f.roots] if f.label == MEME else [],
                                  [] if f.label == MEME else [str(r) for r in f.roots])
        p = predict_array(model, x, batch_size)
        scores.append(score(f.name, f.label, "all, never trained on", p, pre.threshold))
        wrong = (p >= pre.threshold) != (f.label == MEME)
        errors += [(f.name, f.label, float(p[k]), x[k]) for k in np.flatnonzero(wrong)]
    return scores, errors
