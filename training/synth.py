"""Caption synthesis: a non-meme picture made into a meme in one of the styles real memes use.

``caption_meme(picture, rng)`` returns the picture captioned in one of
``STYLES`` and fitted back to the picture's square with the dataset's fit:

- ``impact``: white capitals with a black outline at the top and/or bottom
  (the Meme Generator image macro);
- ``bar``: black text on a white bar above the picture (the caption-bar
  format), the picture below it intact;
- ``labels``: one to three short labels placed on regions of the picture
  (the "distracted boyfriend" format);
- ``panels``: two or three panels (crops of the picture) stacked, each with a
  caption beside or above it (Drake, expanding brain).

``training.data.H5Batches`` (``--synth-memes RATIO``) pairs them: the same
picture appears in one batch uncaptioned as a non-meme and captioned as a
meme, so the label can only be learned from what makes a meme (the idea
MemeTector calls visual part utilisation), while real text-bearing
non-memes (posters, screenshots) stay non-memes.

Fonts come only from installed packages: matplotlib's DejaVu family (Sans,
Sans Bold, Serif Bold, Sans Mono Bold; Latin, Greek and Cyrillic) is always
there; Debian's Liberation fonts (``fonts-liberation2``, installed by
``.ci/run``) join when present, and without them the DejaVu set alone is used.
Everything random is drawn from the ``rng`` passed in, so a seed gives the
same meme on the same set of installed fonts.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from processing.transform import DEFAULT_FIT, LETTERBOX_FILL, fit_image

MAX_SYNTH = 0.5   # of a batch's non-memes: each synthesised meme needs an uncaptioned partner in its batch

STYLES = ("impact", "bar", "labels", "panels")
RENDER = 2   # draw at twice the picture's side, then fit back down: strokes come out anti-aliased like real memes

WORDS = {
    "en": ("when", "you", "me", "my", "code", "finally", "works", "nobody", "is", "this", "a", "bug", "feature",
           "monday", "boss", "friday", "deploy", "production", "tests", "pass", "one", "does", "not", "simply",
           "every", "time", "i", "try", "to", "sleep", "brain", "cat", "dog", "coffee", "why", "just", "wait",
           "for", "it", "expectation", "reality", "also", "them", "us", "how", "teacher", "homework", "internet"),
    "ru": ("когда", "ты", "я", "мой", "код", "наконец", "работает", "никто", "это", "баг", "фича", "понедельник",
           "начальник", "пятница", "деплой", "прод", "тесты", "прошли", "просто", "каждый", "раз", "пытаюсь",
           "спать", "кот", "кофе", "почему", "ждать", "ожидание", "реальность", "мы", "они", "интернет"),
    "el": ("όταν", "εσύ", "εγώ", "κώδικας", "επιτέλους", "δουλεύει", "κανείς", "αυτό", "είναι", "δευτέρα",
           "αφεντικό", "γάτα", "καφές", "γιατί", "περίμενε", "πραγματικότητα"),
}
LANGUAGES = ("en", "en", "en", "en", "ru", "ru", "el")   # mostly English, as real memes are


@functools.cache
def font_files() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bold fonts, regular fonts) from matplotlib, plus Debian's Liberation fonts where installed."""
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    bold = [ttf / "DejaVuSans-Bold.ttf", ttf / "DejaVuSerif-Bold.ttf", ttf / "DejaVuSansMono-Bold.ttf"]
    regular = [ttf / "DejaVuSans.ttf", ttf / "DejaVuSerif.ttf"]
    for folder in ("/usr/share/fonts/truetype/liberation2", "/usr/share/fonts/truetype/liberation"):
        if os.path.isdir(folder):
            bold += sorted(Path(folder).glob("LiberationSans*-Bold.ttf"))
            regular += sorted(Path(folder).glob("LiberationSans*-Regular.ttf"))
            break
    return tuple(map(str, bold)), tuple(map(str, regular))


@functools.cache
def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def phrase(rng: np.random.Generator, lo: int = 2, hi: int = 9) -> str:
    words = WORDS[pick(rng, LANGUAGES)]
    return " ".join(words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(lo, hi + 1))))


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a single over-long word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def fitted_text(text: str, path: str, size: int, width: int, max_lines: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size up to ``size`` at which ``text`` wraps into ``max_lines`` lines of ``width``."""
    while True:
        face = font(path, size)
        lines = wrap(text, face, width)
        if size <= 8 or (len(lines) <= max_lines and all(face.getlength(s) <= width for s in lines)):
            return face, lines
        size = max(8, int(size * 0.85))


def line_height(face) -> int:
    """Pixels from one caption line to the next."""
    return int(face.size * 1.15)


def pick(rng: np.random.Generator, options):
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def draw_lines(draw: ImageDraw.ImageDraw, lines: list[str], face, centre_x: int, top: int, fill, stroke: int = 0,
               stroke_fill=None, align: str = "center", left: int = 0) -> int:
    """Draw lines downward from ``top``; returns the y below the last one."""
    step = line_height(face)
    for k, line in enumerate(lines):
        x = centre_x - face.getlength(line) / 2 if align == "center" else left
        draw.text((x, top + k * step), line, font=face, fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
    return top + len(lines) * step


def trim_fill(picture: np.ndarray) -> np.ndarray:
    """The picture without the letterbox bands around it (rows/columns entirely of the fill colour)."""
    content = ~(picture == LETTERBOX_FILL).all(axis=-1)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if len(rows) < 8 or len(cols) < 8:
        return picture
    return picture[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def upscale(picture: np.ndarray, side: int) -> Image.Image:
    """``picture`` resized (bilinear, aspect kept) so its long side is ``side``."""
    h, w = picture.shape[:2]
    size = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
    return Image.fromarray(np.ascontiguousarray(picture)).resize(size, Image.Resampling.BILINEAR)


def impact(picture: np.ndarray, rng: np.random.Generator) -> Image.Image:
    img = upscale(picture, picture.shape[0] * RENDER)
    side, height_px = img.size
    draw = ImageDraw.Draw(img)
    bold = font_files()[0]
    path = pick(rng, bold)
    where = ("top", "bottom") if rng.random() < 0.6 else (("top",) if rng.random() < 0.5 else ("bottom",))
    for place in where:
        face, lines = fitted_text(phrase(rng).upper(), path, int(side * rng.uniform(0.08, 0.15)), int(side * 0.94), 3)
        height = len(lines) * line_height(face)
        top = int(height_px * 0.02) if place == "top" else height_px - height - int(height_px * 0.03)
        draw_lines(draw, lines, face, side // 2, top, "white", max(1, face.size // 12), "black")
    return img


def bar(picture: np.ndarray, rng: np.random.Generator) -> Image.Image:
    pic = upscale(picture, picture.shape[0] * RENDER)
    side = pic.width
    regular = font_files()[1] + font_files()[0][:1]
    path = pick(rng, regular)
    face, lines = fitted_text(phrase(rng, 4, 16), path, int(side * rng.uniform(0.06, 0.1)), int(side * 0.92), 4)
    pad = int(side * 0.03)
    height = 2 * pad + len(lines) * line_height(face)
    img = Image.new("RGB", (side, pic.height + height), "white")
    img.paste(pic, (0, height))
    align = "center" if rng.random() < 0.5 else "left"
    draw_lines(ImageDraw.Draw(img), lines, face, side // 2, pad, "black", align=align, left=pad)
    return img


def labels(picture: np.ndarray, rng: np.random.Generator) -> Image.Image:
    img = upscale(picture, picture.shape[0] * RENDER)
    side, height_px = img.size
    draw = ImageDraw.Draw(img)
    bold = font_files()[0]
    for _ in range(int(rng.integers(1, 4))):
        path = pick(rng, bold)
        face, lines = fitted_text(phrase(rng, 1, 3), path, int(side * rng.uniform(0.06, 0.1)), int(side * 0.45), 2)
        width = max(face.getlength(s) for s in lines)
        x = int(rng.uniform(0.02, 0.98) * max(0, side - width))
        y = int(rng.uniform(0.02, 0.98) * max(0, height_px - len(lines) * line_height(face)))
        if rng.random() < 0.5:
            draw_lines(draw, lines, face, 0, y, "white", max(1, face.size // 10), "black", align="left", left=x)
        else:
            fill = "black" if rng.random() < 0.7 else "white"
            draw_lines(draw, lines, face, 0, y, fill, 0, align="left", left=x)
    return img


def panels(picture: np.ndarray, rng: np.random.Generator) -> Image.Image:
    side = picture.shape[0] * RENDER
    n = 2 if rng.random() < 0.6 else 3
    beside = rng.random() < 0.5                       # Drake: caption cell beside each picture; else caption above
    cell = side // 2 if beside else side
    big = np.asarray(upscale(picture, side))
    crop_max = min(big.shape[:2])
    regular = font_files()[1] + font_files()[0]
    path = pick(rng, regular)
    rows = []
    for _ in range(n):
        crop = int(crop_max * rng.uniform(0.5, 0.9))
        y0 = int(rng.integers(0, big.shape[0] - crop + 1))
        x0 = int(rng.integers(0, big.shape[1] - crop + 1))
        pic = Image.fromarray(np.ascontiguousarray(big[y0:y0 + crop, x0:x0 + crop])).resize((cell, cell),
                                                                                           Image.Resampling.BILINEAR)
        face, lines = fitted_text(phrase(rng, 2, 7), path, int(cell * rng.uniform(0.08, 0.14)), int(cell * 0.9), 4)
        if beside:
            row = Image.new("RGB", (2 * cell, cell), "white")
            row.paste(pic, (cell, 0))
            height = len(lines) * line_height(face)
            draw_lines(ImageDraw.Draw(row), lines, face, cell // 2, (cell - height) // 2, "black")
        else:
            height = len(lines) * line_height(face) + int(cell * 0.06)
            row = Image.new("RGB", (cell, cell + height), "white")
            row.paste(pic, (0, height))
            draw_lines(ImageDraw.Draw(row), lines, face, cell // 2, int(cell * 0.03), "black")
        rows.append(row)
    gap = int(rng.integers(0, 5)) * RENDER
    out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows) + gap * (n - 1)), "black")
    y = 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height + gap
    return out


RENDERERS = {"impact": impact, "bar": bar, "labels": labels, "panels": panels}


def caption_meme(picture: np.ndarray, rng: np.random.Generator, style: str | None = None,
                 fit: str = DEFAULT_FIT) -> np.ndarray:
    """``picture`` (square uint8 RGB) captioned in ``style`` (random if None), fitted back to its side.

    Letterbox bands are trimmed first, so captions go on the picture, not on the grey.
    """
    style = style or pick(rng, STYLES)
    if style not in RENDERERS:
        raise ValueError(f"unknown caption style {style!r}; choose from {STYLES}")
    return fit_image(np.asarray(RENDERERS[style](trim_fill(picture), rng)), fit, picture.shape[0])
