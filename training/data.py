"""Stream one split of a ``processing.build_h5`` file into Keras, batch by batch.

Each batch reads a sorted set of indices, coalesced into contiguous slices
(one-image chunks make scattered reads cheap; h5py fancy indexing is not).
The file is opened lazily in whichever process or thread reads, so no h5py
handle crosses a fork. Shuffling is a fresh seeded permutation per epoch;
every random choice is seeded by (seed, epoch, batch), so results do not
depend on which worker thread ran a batch.
"""

from __future__ import annotations

import io
import math
import os
import threading

import h5py
import keras
import numpy as np
from PIL import Image

from processing.neardup import content_bounds
from processing.schema import INPUT_SIZE, MEME, NON_MEME
from processing.transform import DEFAULT_FIT, block_mean_pool, fit_image, upsample_repeat

from .h5file import H5_ERRORS, DatasetError, damaged, read_rows, read_sources, split_indices  # noqa: F401
from .realdata import family_of_source
from .synth import MAX_SYNTH, caption_meme, text_nonmeme

BLOCK = 16      # rows that stay neighbours within one epoch's shuffle
FIXED_STREAM = 2**32 - 1   # the random stream of a same_every_epoch split: no training epoch draws from it
CROP_KEEP = 0.85           # an augmenting crop keeps at least this fraction of each side of the picture
REENCODE_QUALITY = (30, 95)   # --reencode: a JPEG quality drawn from this range ...
REENCODE_SCALE = (0.5, 1.0)   # ... after shrinking the picture to this fraction of its side and back

def degrade(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Through 32x32 and back by pixel repetition: exactly what CIFAR pictures went through."""
    return upsample_repeat(block_mean_pool(image, factor), factor)


def degrade_smooth(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Through 32x32 and back bilinearly: what a 32-px picture becomes at the input side with ``--smooth-tiny 1``."""
    return upsample_bilinear(block_mean_pool(image, factor), image.shape)


def is_repeated(image: np.ndarray, factor: int = 4) -> bool:
    return np.array_equal(upsample_repeat(image[::factor, ::factor], factor), image)


def smooth_upsample(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """Re-upsample a pixel-repeated picture bilinearly (no blocks)."""
    return upsample_bilinear(image[::factor, ::factor], image.shape)


def upsample_bilinear(small: np.ndarray, shape) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(small))
    return np.asarray(img.resize(shape[:2][::-1], Image.Resampling.BILINEAR))


def reencode(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picture shrunk by a random factor and back (bilinear), then through JPEG at a random quality.

    Applied to both labels alike, so neither a file's compression (memes are
    mostly re-saved JPEGs, screenshots crisp PNGs) nor its sharpness can
    stand for the label (issue 26: the file metadata alone scores 0.65 on
    sources never seen; ``training.shortcut``). It works on the fitted
    square, after the builder's resize, so it cannot undo what that resize
    already smoothed away.
    """
    side = image.shape[0]
    small = max(8, round(side * rng.uniform(*REENCODE_SCALE)))
    img = Image.fromarray(np.ascontiguousarray(image))
    img = img.resize((small, small), Image.Resampling.BILINEAR).resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(REENCODE_QUALITY[0], REENCODE_QUALITY[1] + 1)))
    return np.asarray(Image.open(buf).convert("RGB"))


def small_crop(image: np.ndarray, rng: np.random.Generator, fit: str, keep: float = CROP_KEEP) -> np.ndarray:
    """A random crop of the picture inside its letterbox bands, at least ``keep`` of each side, fitted back.

    The bands (``neardup.content_bounds``) are never cut into the picture and
    the crop is fitted into the square as the dataset's images were, so a crop
    adds no edge, seam or band that real inputs lack.
    """
    top, bottom, left, right = (int(v) for v in content_bounds(image[None])[0])
    h, w = bottom - top, right - left
    ch, cw = max(1, round(h * rng.uniform(keep, 1))), max(1, round(w * rng.uniform(keep, 1)))
    y0, x0 = top + int(rng.integers(h - ch + 1)), left + int(rng.integers(w - cw + 1))
    return fit_image(np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), fit, image.shape[0])


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    if x.shape[1] == size:
        return x
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in x])


class H5Batches(keras.utils.PyDataset):
    """(pixels uint8, labels int, sample weights) batches of one split; ``augment``: flips and (``crop``) small
    crops."""

    def __init__(self, path, split: str, batch_size: int = 64, *, shuffle: bool = False, seed: int = 0,
                 augment: bool = False, crop: bool = True, degrade_memes: float = 0.0, smooth_tiny: float = 0.0,
                 degrade_all: float = 0.0, reencode: float = 0.0,
                 synth_memes: float = 0.0, synth_nonmemes: float = 0.0, synth_styles: tuple[str, ...] | None = None,
                 synth_scripts: tuple[str, ...] | None = None, fit: str = DEFAULT_FIT,
                 sizes=(INPUT_SIZE,), balance_classes: bool = False, balance_families: float = 0.0,
                 same_every_epoch: bool = False,
                 shard: tuple[int, int] = (0, 1), pad_to: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.path, self.split, self.batch_size = str(path), split, batch_size
        self.shuffle, self.seed, self.augment, self.crop = shuffle, seed, augment, crop
        self.degrade_memes, self.smooth_tiny, self.reencode = degrade_memes, smooth_tiny, reencode
        self.degrade_all = degrade_all
        self.synth_memes, self.fit = min(synth_memes, MAX_SYNTH), fit
        self.synth_nonmemes = synth_nonmemes
        self.synth_styles, self.synth_scripts = synth_styles, synth_scripts
        self.sizes = tuple(sizes)
        self.same_every_epoch = same_every_epoch   # a validation stream: the same synthesis every epoch
        self.shard, self.pad_to = shard, pad_to     # (this process, processes); rows per batch a multiple of this
        self.indices, self.labels = split_indices(path, split)
        if len(self.indices) == 0:
            raise DatasetError(f"split {split!r} of {path} is empty")
        # balance_classes: yield inverse-frequency sample weights as a third element, for the label mix
        # after synthesis (a fraction synth_memes of the non-memes turns into memes)
        self.class_weight = class_weights(self.labels, self.synth_memes) if balance_classes else None
        self.family_weight = None    # balance_families: a factor per row, so small families weigh more
        if balance_families:
            groups = [family_of_source(s) for s in read_sources(self.path, self.indices)]
            self.family_weight = group_weights(groups, self.labels, balance_families)
        self.small_rows = np.zeros(len(self.indices), bool)     # 32-px pictures: the synthesis draws on none
        if synth_memes or synth_nonmemes:
            with h5py.File(self.path, "r") as f:
                if "source" in f:
                    self.small_rows = small_sources(s.decode() for s in f["source"][:][self.indices])
        self.epoch = 0
        self._order = self._permutation()
        self._local = threading.local()

    # ---- file handle: one per thread and process ---------------------------
    def _images(self) -> h5py.Dataset:
        handle = getattr(self._local, "handle", None)
        if handle is None or handle[0] != os.getpid():
            try:
                f = h5py.File(self.path, "r")
                self._local.handle = handle = (os.getpid(), f, f["images"])
            except H5_ERRORS as exc:
                raise damaged(self.path, exc) from None
        return handle[2]

    # ---- Keras interface ---------------------------------------------------
    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def _permutation(self) -> np.ndarray:
        """Block shuffle: runs of BLOCK neighbouring rows, in a fresh random order each epoch.

        A batch is then a handful of near-contiguous runs, which read at
        slice speed instead of one chunk lookup per image; a random offset
        moves the block boundaries every epoch so no two rows stay paired.
        """
        n = len(self.indices)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch])
        offset = int(rng.integers(BLOCK))
        blocks = np.split(np.arange(n), np.arange(offset or BLOCK, n, BLOCK))
        return np.concatenate([blocks[i] for i in rng.permutation(len(blocks))])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order = self._permutation()

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)

    @property
    def size(self) -> int:
        return self.sizes[self.epoch % len(self.sizes)]

    def __getitem__(self, i: int):
        """The batch's rows of this shard: pixels, labels and (with class weights or padding) sample weights.

        The global batch ``i`` is padded to a multiple of ``pad_to`` (one row
        per device) with copies of its last row, weighted 0; shard ``k`` of
        ``n`` takes the k-th contiguous slice. What happens to each row (the
        pairs of the synthesis, which rows become designed text) is planned
        from the whole batch's labels with the batch's random stream, and
        each row is then drawn with a stream of its own, seeded by (seed,
        epoch, batch, row): so the union of the shards is the very batch one
        process would make, and a shard reads only its rows (and the
        pictures its synthesised memes are captioned from).
        """
        pos = np.sort(self._order[i * self.batch_size:(i + 1) * self.batch_size])
        padded = np.r_[np.arange(len(pos)), np.full(-len(pos) % self.pad_to, len(pos) - 1)]
        weight = (np.arange(len(padded)) < len(pos)).astype(np.float32)
        index, count = self.shard
        mine = np.array_split(np.arange(len(padded)), count)[index]
        epoch = FIXED_STREAM if self.same_every_epoch else self.epoch
        y_all = self.labels[pos].astype(np.int32)
        captions, texts = self._plan(y_all, self.small_rows[pos], np.random.default_rng([self.seed, epoch, i]))
        rows = padded[mine]
        read = np.unique(np.r_[rows, [captions[r] for r in rows if r in captions]]).astype(int)
        pixels = dict(zip(read.tolist(), read_rows(self._images(), self.indices[pos[read]])))
        x = np.empty((len(rows), *next(iter(pixels.values())).shape), np.uint8)
        y = y_all[rows].copy()
        for k, r in enumerate(rows.tolist()):
            rng = np.random.default_rng([self.seed, epoch, i, r]) if self._random else None
            if r in captions:
                x[k], y[k] = caption_meme(pixels[captions[r]], rng, fit=self.fit, styles=self.synth_styles,
                                          scripts=self.synth_scripts), MEME
            elif r in texts:
                x[k] = text_nonmeme(pixels[r], rng, fit=self.fit, scripts=self.synth_scripts)
            else:
                x[k] = pixels[r]
            if rng is not None:
                x[k] = self._transform(x[k], y[k], rng)
        x = resize_batch(x, self.size)
        w = weight[mine]
        if self.family_weight is not None:
            w = w * self.family_weight[pos[rows]]
        if self.class_weight is not None:
            w = w * np.array([self.class_weight[int(v)] for v in y], dtype=np.float32)
        elif self.pad_to == 1 and self.family_weight is None:
            return x, y
        return x, y, w

    @property
    def _random(self) -> bool:
        return bool(self.augment or self.degrade_memes or self.smooth_tiny or self.degrade_all or self.reencode
                    or self.synth_memes or self.synth_nonmemes)

    def _plan(self, y: np.ndarray, small: np.ndarray, rng: np.random.Generator) -> tuple[dict[int, int], set[int]]:
        """Which rows of the batch become synthesised memes (target -> the non-meme captioned into it) and which
        are redrawn as designed text.

        Pairs within the batch: a non-meme's slot is given the captioned
        version of another non-meme, so the same picture is seen uncaptioned
        as a non-meme and captioned (``training.synth``) as a meme in one
        step; a fraction ``synth_memes`` of the batch's non-memes becomes such
        a meme (at most half, since each needs a partner that stays
        uncaptioned). Of the non-memes left untouched, a fraction
        ``synth_nonmemes`` (of all the batch's non-memes, so at most what
        captioning left: 1 - 2 x synth_memes) is redrawn as designed text
        (``synth.text_nonmeme``) and stays a non-meme. Only pictures that are
        not ``small`` (32-px, see ``small_sources``) are captioned or redrawn;
        a small one may still give its slot to a captioned picture.
        """
        if not (self.synth_memes or self.synth_nonmemes):
            return {}, set()
        non_memes = rng.permutation(np.flatnonzero(y == NON_MEME))
        drawable = non_memes[~small[non_memes]]
        m = min(len(drawable), len(non_memes) // 2, int(rng.binomial(len(non_memes), self.synth_memes))) \
            if self.synth_memes else 0
        sources = set(drawable[:m].tolist())
        targets = [t for t in non_memes.tolist() if t not in sources][:m]
        captions = {int(t): int(s) for s, t in zip(drawable[:m], targets)}
        texts = set()
        if self.synth_nonmemes:
            taken = set(targets)
            free = [k for k in drawable[m:].tolist() if k not in taken]
            texts = {int(k) for k in free[:int(rng.binomial(len(non_memes), self.synth_nonmemes))]}
        return captions, texts

    def _transform(self, image: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
        if label == MEME and rng.random() < self.degrade_memes:
            image = degrade(image)
        elif label == NON_MEME and rng.random() < self.smooth_tiny and is_repeated(image):
            image = smooth_upsample(image)
        elif self.degrade_all and rng.random() < self.degrade_all:
            image = degrade_smooth(image)
        if self.reencode and rng.random() < self.reencode:
            image = reencode(image, rng)
        if self.augment:
            if rng.random() < 0.5:
                image = image[:, ::-1]
            if rng.random() < 0.5 and self.crop:
                image = small_crop(image, rng, self.fit)
        return image


def small_sources(sources) -> np.ndarray:
    """Which rows are 32-px pictures (``tiny:`` folders, CIFAR): upsampled four times they are blurs, so a caption
    or a design drawn on one is a blur with text, unlike any real meme, and teaches the model that a blur is a
    meme (the cross-validation: captions on them took the tiny pictures' specificity from 1.00 to 0.52)."""
    return np.array([s.startswith(("tiny:", "cifar100")) for s in sources], dtype=bool)


def class_weights(labels: np.ndarray, synth_memes: float = 0.0) -> dict[int, float]:
    """Inverse-frequency weights, normalised so the mean weight is 1.

    With ``synth_memes`` the counts are the expected ones after that fraction
    of the non-memes has been turned into memes.
    """
    n = len(labels)
    counts = np.bincount(labels, minlength=2).astype(float)
    moved = counts[NON_MEME] * synth_memes
    counts = {NON_MEME: counts[NON_MEME] - moved, MEME: counts[MEME] + moved}
    return {c: (n / (2 * counts[c]) if counts[c] else 0.0) for c in (0, 1)}


def group_weights(groups, labels: np.ndarray, power: float) -> np.ndarray:
    """A factor per row, ``n ** -power`` for the ``n`` rows of its label in its group, scaled to mean 1 within each
    label (the class balance stays as it was): power 0 weighs every row alike, 1 gives every group of a label the
    same total weight, 0.5 weighs a group by the square root of its size."""
    labels = np.asarray(labels)
    keys = np.array([f"{int(y)}\x00{g}" for y, g in zip(labels, groups)])
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    raw = counts[inverse].astype(np.float64) ** -power
    out = np.ones(len(labels), np.float32)
    for label in np.unique(labels):
        mine = labels == label
        out[mine] = raw[mine] / raw[mine].mean()
    return out
