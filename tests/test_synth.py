"""Caption synthesis: deterministic under a seed, and every style really writes text."""

import numpy as np
import pytest
from PIL import ImageDraw

from processing.transform import fit_letterbox
from training.synth import STYLES, caption_meme, font_files, trim_fill


def picture(seed=0, h=128, w=128):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 120, (8, 8, 3), dtype=np.uint8)     # a smooth mid-tone picture, no pure black or white
    return np.kron(base, np.ones((h // 8, w // 8, 1), np.uint8))


@pytest.mark.parametrize("style", [*STYLES, None])
def test_same_seed_same_meme(style):
    pic = picture()
    a = caption_meme(pic, np.random.default_rng(5), style)
    b = caption_meme(pic, np.random.default_rng(5), style)
    c = caption_meme(pic, np.random.default_rng(6), style)
    assert a.shape == pic.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", range(4))
def test_each_style_draws_text(style, seed, monkeypatch):
    """The same layout with and without the text drawn: the text must change a visible share of pixels."""
    pic = picture(seed)
    with_text = caption_meme(pic, np.random.default_rng(seed), style).astype(int)
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda *a, **k: None)
    without = caption_meme(pic, np.random.default_rng(seed), style).astype(int)
    changed = (np.abs(with_text - without).max(axis=-1) > 60).mean()
    assert changed > 0.004, changed


def test_letterbox_bands_are_trimmed_before_captioning():
    wide = fit_letterbox(picture(1, 64, 128))            # grey bands above and below
    assert trim_fill(wide).shape == (64, 128, 3)
    assert np.array_equal(trim_fill(picture(2)), picture(2))


def test_fonts_come_from_installed_packages_and_cover_cyrillic():
    from PIL import ImageFont
    bold, regular = font_files()
    assert bold and regular
    for path in (*bold, *regular):
        face = ImageFont.truetype(path, 20)
        missing = np.asarray(face.getmask("\U0010fffd")).tolist()       # a private-use code point: the font's blank box
        assert all(np.asarray(face.getmask(ch)).tolist() != missing for ch in "ЖЯλΩ")
    assert caption_meme(picture(), np.random.default_rng(0), "impact").shape == (128, 128, 3)


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown caption style"):
        caption_meme(picture(), np.random.default_rng(0), "comic-sans")
