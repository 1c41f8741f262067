"""Caption synthesis and text non-memes: deterministic under a seed, and every style really writes text."""

from pathlib import Path

import numpy as np
import pytest
from PIL import ImageDraw

from processing.transform import fit_letterbox
from training import scripts, synth
from training.scripts import SCRIPT_SHARES, available_scripts, font_path, latin_fonts
from training.synth import NONMEME_STYLES, STYLES, caption_meme, text_nonmeme, trim_fill, wrap


def picture(seed=0, h=128, w=128):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 120, (8, 8, 3), dtype=np.uint8)     # a smooth mid-tone picture, no pure black or white
    return np.kron(base, np.ones((h // 8, w // 8, 1), np.uint8))


CASES = [(caption_meme, style) for style in STYLES] + [(text_nonmeme, style) for style in NONMEME_STYLES]


@pytest.mark.parametrize("make,style", [*CASES, (caption_meme, None), (text_nonmeme, None)])
def test_same_seed_same_picture(make, style):
    pic = picture()
    a = make(pic, np.random.default_rng(5), style)
    b = make(pic, np.random.default_rng(5), style)
    c = make(pic, np.random.default_rng(6), style)
    assert a.shape == pic.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("make,style", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_each_style_draws_text(make, style, seed, monkeypatch):
    """The same layout with and without the text drawn: the text must change a visible share of pixels (captions
    drawn small on purpose are tested below)."""
    monkeypatch.setattr(synth, "SMALL_CAPTIONS", 0.0)
    pic = picture(seed)
    with_text = make(pic, np.random.default_rng(seed), style).astype(int)
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda *a, **k: None)
    without = make(pic, np.random.default_rng(seed), style).astype(int)
    changed = (np.abs(with_text - without).max(axis=-1) > 60).mean()
    assert changed > (0.0002 if style == "subtitle" else 0.004), changed     # a subtitle is a line of small text


def test_letterbox_bands_are_trimmed_before_captioning():
    wide = fit_letterbox(picture(1, 64, 128))            # grey bands above and below
    assert trim_fill(wide).shape == (64, 128, 3)
    assert np.array_equal(trim_fill(picture(2)), picture(2))


def test_fonts_come_from_installed_packages_and_cover_cyrillic():
    from PIL import ImageFont
    bold, regular = latin_fonts()
    assert bold and regular
    for path in (*bold, *regular):
        face = ImageFont.truetype(path, 20)
        missing = np.asarray(face.getmask("\U0010fffd")).tolist()       # a private-use code point: the font's blank box
        assert all(np.asarray(face.getmask(ch)).tolist() != missing for ch in "ЖЯλΩ")
    assert caption_meme(picture(), np.random.default_rng(0), "impact").shape == (128, 128, 3)


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="unknown caption style"):
        caption_meme(picture(), np.random.default_rng(0), "comic-sans")
    with pytest.raises(ValueError, match="unknown text non-meme style"):
        text_nonmeme(picture(), np.random.default_rng(0), "impact")


@pytest.mark.parametrize("style", [s for s in NONMEME_STYLES if s != "sign"])   # a sign's text is large: below
def test_text_nonmemes_use_the_picture_and_small_text(style, monkeypatch):
    """Designed text keeps some of the picture, and its lines are smaller than a meme's captions (those not
    drawn small on purpose)."""
    monkeypatch.setattr(synth, "SMALL_CAPTIONS", 0.0)
    pic = picture(3)
    sizes = []
    real_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, font=None, **k: sizes.append(font.size) or real_text(self, xy, text,
                                                                                                    font=font, **k))
    out = text_nonmeme(pic, np.random.default_rng(1), style)
    small = sorted(sizes)[len(sizes) // 2]
    sizes.clear()
    caption_meme(pic, np.random.default_rng(1), "impact")
    assert small < min(sizes)                       # the median line of designed text is smaller than any caption
    colours = {tuple(c) for c in np.unique(pic.reshape(-1, 3), axis=0)}
    assert sum(tuple(c) in colours for c in out.reshape(-1, 3)[::7]) > 20   # the picture is in it


@pytest.mark.slow   # 13 styles x 5 shapes x 3 seeds
@pytest.mark.parametrize("make,style", CASES)
def test_any_shape_of_picture_is_drawn(make, style):
    """A picture far wider than tall (letterboxed into its square), or a tiny one, is drawn at the square's scale."""
    for pic in (fit_letterbox(picture(4, 8, 128)), fit_letterbox(picture(5, 16, 128)), fit_letterbox(picture(6, 128, 8)),
                picture(7, 16, 16), picture(8, 32, 32)):
        for seed in range(3):
            out = make(pic, np.random.default_rng(seed), style)
            assert out.shape == pic.shape and out.dtype == np.uint8


NOTO = all(Path(font_path(f)[0]).is_file() for name in ("ja", "devanagari")
           for f in scripts.script_fonts(name)[0])
needs_noto = pytest.mark.skipif(not NOTO, reason="Debian's fonts-noto-core and fonts-noto-cjk are not installed "
                                                 "(scripts/system-deps installs them)")


@needs_noto
def test_every_script_has_fonts_that_cover_each_of_its_words():
    """Every character of every word (upper-cased too, as the impact style writes it) is in each of the script's
    fonts: no missing-glyph box is ever drawn."""
    from fontTools.ttLib import TTFont

    assert set(available_scripts()) == set(SCRIPT_SHARES)
    for name, script in available_scripts().items():
        for spec in (*script.bold, *script.regular):
            path, face = font_path(spec)
            cmap = TTFont(path, fontNumber=face, lazy=True).getBestCmap()
            missing = {ch for word in script.words for ch in word + word.upper() if ord(ch) not in cmap}
            assert not missing, (name, spec, sorted(missing))


@pytest.mark.slow   # 13 scripts x 8 styles
@needs_noto
@pytest.mark.parametrize("name", sorted(SCRIPT_SHARES))
def test_each_script_is_drawn_in_every_caption_style(name, monkeypatch):
    script = available_scripts()[name]
    monkeypatch.setattr(synth, "pick_script", lambda rng, allowed=None: script)
    monkeypatch.setattr(synth, "SMALL_CAPTIONS", 0.0)
    for style in STYLES:
        pic = picture(2)
        with_text = caption_meme(pic, np.random.default_rng(1), style).astype(int)
        with monkeypatch.context() as m:
            m.setattr(ImageDraw.ImageDraw, "text", lambda *a, **k: None)
            without = caption_meme(pic, np.random.default_rng(1), style).astype(int)
        changed = (np.abs(with_text - without).max(axis=-1) > 60).mean()
        assert changed > (0.0002 if style == "subtitle" else 0.004), (name, style, changed)


@needs_noto
def test_cjk_lines_break_between_characters_and_others_between_words():
    face = synth.font(available_scripts()["zh-hans"].regular[0], 20)
    text = "当你我的代码终于能运行了没有人"
    lines = wrap(text, face, 100)
    assert len(lines) > 1 and "".join(lines) == text and all(face.getlength(line) <= 100 for line in lines)
    hindi = synth.font(available_scripts()["devanagari"].regular[0], 20)
    words = "आखिरकार मेरा कोड चलता है"
    assert " ".join(wrap(words, hindi, 90)) == words                 # clusters never split: whole words per line


@needs_noto
def test_synth_styles_and_scripts_restrict_what_is_drawn():
    rng = np.random.default_rng(3)
    assert {scripts.pick_script(rng, ("ja", "thai")).name for _ in range(60)} == {"ja", "thai"}
    assert {scripts.pick_script(rng, ("latin",)).name for _ in range(20)} == {"latin"}
    pic = picture(4)
    for seed in range(3):                         # one allowed style: exactly that style's drawing
        chosen = caption_meme(pic, np.random.default_rng(seed), styles=("sticker",), scripts=("ko",))
        same_draws = np.random.default_rng(seed)
        same_draws.integers(1)                        # the style draw among one
        assert np.array_equal(chosen, caption_meme(pic, same_draws, "sticker", scripts=("ko",)))


def test_synth_styles_and_scripts_flags_take_all_or_known_names(capsys):
    from training.run import parse_args

    args = parse_args(["--synth-styles", "subtitle,sticker", "--synth-scripts", "zh-hans,ja"])
    assert args.synth_styles == ("subtitle", "sticker") and args.synth_scripts == ("zh-hans", "ja")
    args = parse_args(["--synth-styles", "all"])
    assert args.synth_styles == STYLES and args.synth_scripts == tuple(SCRIPT_SHARES)
    for bad in ("klingon", "latin,latin", ""):
        with pytest.raises(SystemExit) as exc:
            parse_args(["--synth-scripts", bad])
        assert exc.value.code == 2
    assert "expected 'all' or distinct names from latin,cyrillic" in capsys.readouterr().err


def test_a_script_without_fonts_is_left_out_and_said_once(monkeypatch, capsys):
    real = scripts.script_fonts
    monkeypatch.setattr(scripts, "script_fonts",
                        lambda name: (("/gone/x.ttf",), ("/gone/y.ttf",)) if name == "thai" else real(name))
    scripts.available_scripts.cache_clear()
    try:
        found = available_scripts()
        again = available_scripts()
        assert "thai" not in found and "latin" in found and again is found
        err = capsys.readouterr().err
        assert err.count("training.synth: no fonts for") == 1 and "thai" in err and "fonts-noto-core" in err
        assert caption_meme(picture(), np.random.default_rng(0)).shape == (128, 128, 3)
    finally:
        scripts.available_scripts.cache_clear()


@pytest.mark.parametrize("style", [s for s in STYLES if s not in ("subtitle",)])
def test_small_captions_are_drawn_in_every_style(style, monkeypatch):
    """With SMALL_CAPTIONS 1 every caption is 3-5% of the drawing's side (the subtitle is small by design)."""
    monkeypatch.setattr(synth, "SMALL_CAPTIONS", 1.0)
    sizes = []
    real_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, font=None, **k: sizes.append(font.size) or real_text(self, xy, text,
                                                                                                    font=font, **k))
    caption_meme(picture(2), np.random.default_rng(0), style)
    side = 128 * synth.RENDER
    assert sizes and max(sizes) <= 0.05 * side + 1, sizes


def test_a_sign_is_large_text_seen_in_perspective(monkeypatch):
    """The one text non-meme with large text: a panel in the scene, its edges not square to the picture."""
    from training.synth import perspective_coefficients

    quad = [(3, 1), (40, 0), (44, 30), (0, 28)]
    coeffs = perspective_coefficients(quad, [(0, 0), (44, 0), (44, 30), (0, 30)])
    a, b, c, d, e, f, g, h = coeffs
    for (x, y), (u, v) in zip(quad, [(0, 0), (44, 0), (44, 30), (0, 30)]):     # each corner lands where it should
        w = g * x + h * y + 1
        assert (a * x + b * y + c) / w == pytest.approx(u, abs=1e-6)
        assert (d * x + e * y + f) / w == pytest.approx(v, abs=1e-6)
    sizes = []
    real_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, font=None, **k: sizes.append(font.size) or real_text(self, xy, text,
                                                                                                    font=font, **k))
    out = text_nonmeme(picture(3), np.random.default_rng(2), "sign")
    assert out.shape == (128, 128, 3) and sizes and min(sizes) >= 0.05 * 128 * synth.RENDER


@pytest.mark.slow   # typesets 240 formulas
def test_formulas_are_typeset_safely_from_several_reader_threads():
    """The training reads batches in threads; matplotlib's mathtext parser is not thread-safe (it failed with a
    ParseException in a cross-validation run): the typesetting is serialised."""
    import threading

    synth.typeset.cache_clear()
    errors = []

    def work(k):
        try:
            for i in range(60):
                synth.typeset(synth.FORMULAS[(i + k) % len(synth.FORMULAS)], 6 + 2 * ((i * 7 + k) % 20))
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
