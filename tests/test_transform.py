import numpy as np
import pytest
from PIL import Image

from processing.reference import original_block_means
from processing.transform import (LETTERBOX_FILL, area_resize, block_mean_pool, fit_image, fit_letterbox, fit_original,
                                  fit_region, fit_square, letterbox_box, original_square_side, tiny_to_input,
                                  upsample_repeat)


@pytest.mark.parametrize("h,w", [(128, 128), (255, 300), (384, 257), (513, 1024), (1000, 130)])
def test_fit_original_equals_per_block_mean(h, w):
    rgb = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = fit_original(rgb)
    ref = original_block_means(rgb)
    assert ours.shape == (128, 128, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(float) - ref * 255).max() <= 0.5 + 1e-9  # rounding only


def test_block_mean_pool_rounds_half_up():
    a = np.array([[0, 1], [0, 0]], dtype=np.uint8)[:, :, None]   # mean 0.25 -> 0
    b = np.array([[1, 1], [0, 0]], dtype=np.uint8)[:, :, None]   # mean 0.5  -> 1
    assert block_mean_pool(a, 2).item() == 0 and block_mean_pool(b, 2).item() == 1


@pytest.mark.parametrize("h,w,side", [(127, 500, 0), (128, 128, 128), (1, 1000, 0), (300, 129, 128),
                                      (256, 999, 256), (5000, 4000, 3968)])
def test_original_square_side(h, w, side):
    assert original_square_side(h, w) == side


def test_fit_original_keeps_top_left_only():
    rgb = np.zeros((256, 256, 3), np.uint8)
    rgb[128:, :] = 255  # bottom half white: the seed's 2x2 pooling keeps all of it
    assert fit_original(rgb)[64:].min() == 255
    rgb = np.zeros((250, 250, 3), np.uint8)
    rgb[128:, :] = 255  # a 250px thumbnail: the seed keeps only its top-left 128x128
    assert fit_original(rgb).max() == 0


def test_fit_square_keeps_the_whole_thumbnail():
    rgb = np.zeros((250, 250, 3), np.uint8)
    rgb[200:, :] = 255  # the bottom caption survives the default fit
    out = fit_square(rgb)
    assert out[-20:].mean() > 200 and out[:90].max() == 0


def test_fit_square_is_top_anchored_and_centred():
    rgb = np.zeros((600, 300, 3), np.uint8)   # tall: keep the top square
    rgb[:300] = 100
    assert (fit_square(rgb) == 100).all()
    rgb = np.zeros((256, 512, 3), np.uint8)   # wide: keep the centre square
    rgb[:, 128:384] = 50
    assert (fit_square(rgb) == 50).all()


def test_area_resize_matches_box_filter_reference():
    rgb = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(rgb).resize((128, 128), Image.Resampling.BOX))
    assert np.array_equal(area_resize(rgb, 128), ref)
    # integer factors take the exact block-mean path
    big = np.random.default_rng(2).integers(0, 256, (384, 384, 3), dtype=np.uint8)
    assert np.array_equal(area_resize(big, 128), block_mean_pool(big, 3))


def test_one_pixel_wide_and_huge():
    assert fit_square(np.full((1, 1000, 3), 7, np.uint8)).shape == (128, 128, 3)
    huge = np.full((4100, 6000, 3), 9, np.uint8)
    assert (fit_original(huge) == 9).all() and (fit_square(huge) == 9).all()


def test_upsample_repeat_is_pixel_repetition():
    tiny = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    up = tiny_to_input(tiny)
    assert up.shape == (128, 128, 3)
    for i in (0, 5, 127):
        for j in (0, 63, 126):
            assert (up[i, j] == tiny[i // 4, j // 4]).all()
    assert np.array_equal(upsample_repeat(tiny, 1), tiny)
    with pytest.raises(ValueError):
        tiny_to_input(np.zeros((30, 30, 3), np.uint8))


@pytest.mark.parametrize("h,w", [(128, 128), (250, 400), (400, 250), (301, 130)])
def test_letterbox_region_is_the_centred_long_side(h, w):
    top, left, side = fit_region(h, w, "letterbox")
    assert side == max(h, w) and top <= 0 and left <= 0
    assert abs((top + side / 2) - h / 2) <= 0.5 and abs((left + side / 2) - w / 2) <= 0.5   # centred
    t, lft, nh, nw = letterbox_box(h, w)                 # the picture's place inside the model input agrees
    assert abs(-top * 128 / side - t) <= 1 and abs(-left * 128 / side - lft) <= 1


@pytest.mark.parametrize("fit", ["square", "original"])
@pytest.mark.parametrize("h,w", [(128, 128), (250, 400), (400, 250), (300, 129), (90, 200), (513, 1024)])
def test_fit_region_is_all_the_fit_looks_at(fit, h, w):
    rgb = np.random.default_rng(h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    top, left, side = fit_region(h, w, fit)
    assert 0 <= top and 0 <= left and top + side <= h and left + side <= w
    assert np.array_equal(fit_image(rgb[top:top + side, left:left + side], fit), fit_image(rgb, fit))
    rest = np.full_like(rgb, 77)                            # all outside the region replaced
    rest[top:top + side, left:left + side] = rgb[top:top + side, left:left + side]
    assert np.array_equal(fit_image(rest, fit), fit_image(rgb, fit))


@pytest.mark.parametrize("h,w", [(300, 900), (900, 300), (400, 400), (96, 160), (1000, 130)])
def test_letterbox_keeps_every_row_and_column(h, w):
    """A border and a distinct colour per cell of a 4x6 grid all survive: nothing is cut off."""
    scale = 128 / max(h, w)
    band = int(np.ceil(2 / scale))            # wide enough to leave one pure output pixel after area resampling
    rgb = np.zeros((h, w, 3), np.uint8)
    colours = {}
    rows, cols = np.array_split(np.arange(h), 4), np.array_split(np.arange(w), 6)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            colour = (40 * i + 20, 40 * j + 10, 200)
            rgb[r[0]:r[-1] + 1, c[0]:c[-1] + 1] = colour
            colours[(i, j)] = colour
    border = (255, 0, 0)
    rgb[:band], rgb[-band:], rgb[:, :band], rgb[:, -band:] = border, border, border, border
    out = fit_letterbox(rgb)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    top, left, nh, nw = letterbox_box(h, w)
    assert max(nh, nw) == 128 and abs(nh - h * scale) <= 0.5 and abs(nw - w * scale) <= 0.5
    inner = out[top:top + nh, left:left + nw]
    for edge in (inner[0], inner[-1], inner[:, 0], inner[:, -1]):   # the border is on all four sides
        assert (edge == border).all(axis=-1).mean() > 0.5
    found = {tuple(p) for p in inner.reshape(-1, 3).tolist()}
    # cells narrower than a pixel after scaling cannot survive pure; all others must
    for (i, j), colour in colours.items():
        if len(rows[i]) * scale >= 3 + 2 * band * scale and len(cols[j]) * scale >= 3 + 2 * band * scale:
            assert colour in found, (i, j)
    outside = np.ones((128, 128), bool)
    outside[top:top + nh, left:left + nw] = False
    assert (out[outside] == LETTERBOX_FILL).all()


def test_letterbox_of_a_square_is_the_square_fit():
    for side in (256, 200, 128, 96):
        rgb = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
        assert np.array_equal(fit_letterbox(rgb), fit_square(rgb))
