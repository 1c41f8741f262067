import itertools
import json
from collections import defaultdict

import h5py
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.support.testkit import save
from processing import build_h5
from processing.neardup import (GREY, GRID_COLS, GRID_ROWS, NEAR_DUPLICATE_BITS, STEP, components, hash_block,
                                image_hashes, near_duplicate_keys, near_pairs)
from processing.transform import LETTERBOX_FILL, fit_letterbox


def reference_hash(image: np.ndarray) -> int:
    """The definition, one picture at a time with plain loops."""
    h, w, _ = image.shape
    keep_rows = [y for y in range(h) if any((image[y, x] != LETTERBOX_FILL).any() for x in range(w))]
    keep_cols = [x for x in range(w) if any((image[y, x] != LETTERBOX_FILL).any() for y in range(h))]
    top, bottom = (keep_rows[0], keep_rows[-1] + 1) if keep_rows else (0, h)
    left, right = (keep_cols[0], keep_cols[-1] + 1) if keep_cols else (0, w)
    grey = image.astype(np.float64) @ GREY.astype(np.float64)
    ys = [top + (bottom - top) * k // GRID_ROWS for k in range(GRID_ROWS + 1)]
    xs = [left + (right - left) * k // GRID_COLS for k in range(GRID_COLS + 1)]
    bits = 0
    for r in range(GRID_ROWS):
        means = []
        for c in range(GRID_COLS):
            box = grey[ys[r]:ys[r + 1], xs[c]:xs[c + 1]]
            means.append(box.sum() / max(box.size, 1))
        for c in range(GRID_COLS - 1):
            bits = (bits << 1) | int(means[c + 1] > means[c] + STEP)
    return bits


def smooth(seed: int, width: int = 200, height: int = 160, caption: str | None = None) -> Image.Image:
    """A photo-like picture (smooth colours from a 6x6 seed), optionally with a caption bar."""
    cells = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(cells).resize((width, height), Image.BILINEAR)
    if caption:
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, width, height // 6], fill=(255, 255, 255))
        d.text((6, 4), caption, fill=(0, 0, 0))
    return img


def test_hash_matches_the_plain_definition():
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8),
                fit_letterbox(np.asarray(smooth(1, 300, 90)), 128),      # wide: bands above and below
                fit_letterbox(np.asarray(smooth(2, 60, 240)), 128),      # tall: bands left and right
                fit_letterbox(np.asarray(smooth(3, 4, 200)), 128),       # content narrower than the grid
                np.full((128, 128, 3), LETTERBOX_FILL, np.uint8),        # nothing but fill
                np.full((128, 128, 3), 255, np.uint8)]                   # flat: no step anywhere
    got = hash_block(np.stack(pictures))
    assert [int(g) for g in got] == [reference_hash(p) for p in pictures]
    assert int(got[-1]) == 0
    assert np.array_equal(image_hashes(np.stack(pictures), chunk=4), got)


def test_same_picture_other_caption_is_near_and_others_are_far():
    def h(img):
        return int(hash_block(fit_letterbox(np.asarray(img), 128)[None])[0])

    pairs = [(h(smooth(s, caption="WHEN THE CODE WORKS")), h(smooth(s, caption="me: it compiles"))) for s in range(8)]
    assert all(bin(a ^ b).count("1") <= NEAR_DUPLICATE_BITS for a, b in pairs)
    # the same picture letterboxed at another size and re-encoded stays near too
    assert bin(h(smooth(11)) ^ h(smooth(11, 320, 256).resize((240, 192)))).count("1") <= NEAR_DUPLICATE_BITS
    distinct = [a for a, _ in pairs]
    assert min(bin(a ^ b).count("1") for a, b in itertools.combinations(distinct, 2)) > NEAR_DUPLICATE_BITS


def test_near_pairs_equal_brute_force():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300).astype(np.uint64)
    planted = []
    for i in range(60):      # copies with 0..10 bits flipped: some within 8 bits, some beyond
        flips = rng.choice(64, size=i % 11, replace=False)
        planted.append(base[i] ^ np.uint64(sum(1 << int(b) for b in flips)))
    hashes = np.concatenate([base, np.array(planted, np.uint64)])
    for bits in (0, 3, 8):
        got = {(int(a), int(b)) for i, j in near_pairs(hashes, bits) for a, b in zip(i, j)}
        want = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
                if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= bits}
        assert got == want and len(want) > 0


def test_components_equal_a_graph_search():
    rng = np.random.default_rng(2)
    n = 200
    left, right = rng.integers(0, n, 150), rng.integers(0, n, 150)
    got = components(n, iter([(left, right)]))
    neighbours = defaultdict(set)
    for a, b in zip(left.tolist(), right.tolist()):
        neighbours[a].add(b)
        neighbours[b].add(a)
    for start in range(n):
        seen, todo = {start}, [start]
        while todo:
            for nxt in neighbours[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert got[start] == min(seen)


def test_keys_join_near_duplicates_to_their_smallest_key():
    hashes = np.array([0b1111, 0b1110, 2**63, 0b1111, 0b0011], np.uint64)
    keys = np.array([12, 11, 10, 13, 14])
    assert near_duplicate_keys(keys, hashes, 1).tolist() == [11, 11, 10, 11, 14]
    assert near_duplicate_keys(keys, hashes, 2).tolist() == [11, 11, 10, 11, 11]
    assert near_duplicate_keys(keys, hashes, -1).tolist() == keys.tolist()


@pytest.mark.parametrize("bits, together", [(NEAR_DUPLICATE_BITS, True), (-1, False)])
def test_build_keeps_near_duplicates_in_one_split(tmp_path, bits, together):
    memes = tmp_path / "memes"
    for s in range(12):      # twelve pictures, each twice under different captions, no template folders
        save(smooth(s, caption=f"TOP TEXT {s}"), memes / f"{s}a.jpg")
        save(smooth(s, caption=f"another caption {s}"), memes / f"{s}b.jpg")
    for s in range(40):
        save(smooth(100 + s), tmp_path / "photos" / f"{s}.jpg")
    out = tmp_path / "d.h5"
    assert build_h5.main(["--memes", str(memes), "--non-memes", str(tmp_path / "photos"), "--out", str(out),
                          "--min-side", "32", "--near-duplicate-bits", str(bits), "--no-progress",
                          "--workers", "1"]) == 0
    with h5py.File(out, "r") as f:
        ids = [s.decode() for s in f["source_id"][:]]
        split = f["split"][:]
    by_picture = defaultdict(set)
    for source_id, sp in zip(ids, split.tolist()):
        if source_id.endswith(("a.jpg", "b.jpg")):
            by_picture[source_id[:-5]].add(sp)
    assert len(by_picture) == 12
    assert all(len(s) == 1 for s in by_picture.values()) == together
    assert json.loads(out.with_suffix(".summary.json").read_text())["params"]["near_duplicate_bits"] == bits
