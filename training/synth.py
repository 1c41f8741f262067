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
  caption beside or above it (Drake, expanding brain);
- ``comic``: the picture redrawn as line art on white, cut into a grid of
  framed panels with speech balloons (the drawn multi-panel comics);
- ``tweet``: a post screenshot, avatar, name and handle, a few lines of
  text, the picture below it or not (tweet screenshots);
- ``subtitle``: a film still with one or two short lines of small white or
  yellow outlined text near the bottom (subtitled stills);
- ``sticker``: a cut-out of the picture on white with a short caption above
  or below (captioned stickers).

In every style a share ``SMALL_CAPTIONS`` of the captions is drawn small
(3-5% of the picture's side), as on many real memes.

``text_nonmeme(picture, rng)`` is the mirror image: the picture made into a
text-bearing picture that is *not* a meme, in one of ``NONMEME_STYLES``:

- ``poster``: a portrait poster, the picture under a styled title, a tagline
  and a block of small credits (movie posters);
- ``screen``: a phone app screen, status bar, app bar and a list of crops of
  the picture with small titles and grey subtitles (app screenshots);
- ``page``: a web or document page, a heading, paragraphs of small text and
  the picture set in beside them;
- ``receipt``: a scanned till receipt, a strip of small monospaced lines with
  prices, lying on the picture as its backing;
- ``chart``: a dashboard panel, a titled bar or line chart with axes, ticks
  and small labels, the picture a thumbnail card beside it;
- ``dialog``: a desktop application's dialog window (title bar, icon,
  message, buttons, maybe a field; light or dark theme) over the picture as
  the desktop;
- ``formula``: a page or slide of typeset formulas (matplotlib's mathtext)
  and a matrix, the picture a figure beside them;
- ``sign``: the picture as a street photo with a sign in it: a coloured
  panel of large text seen in perspective, lit unevenly (the one designed
  text here that is large: what tells it from a caption is that it is part
  of the scene);
- ``slide``: a presentation slide, a title, bullet points and the picture;
- ``terminal``: a terminal or code editor window of monospaced, partly
  coloured lines over the picture as the desktop.

What tells the two apart is where and how large the text is, not whether
there is text: meme captions are few words, large, over or right against the
picture; designed text is small and many-lined or styled as a title.

``training.data.H5Batches`` (``--synth-memes RATIO``) pairs them: the same
picture appears in one batch uncaptioned as a non-meme and captioned as a
meme, so the label can only be learned from what makes a meme (the idea
MemeTector calls visual part utilisation), while real text-bearing
non-memes (posters, screenshots) stay non-memes; ``--synth-nonmemes RATIO``
adds the synthesised text non-memes, so that a leave-one-source-out run
without any real text non-meme still sees text that is not a meme.

Each picture is written in one script drawn by ``training.scripts.SCRIPT_SHARES``
(Latin, Cyrillic, Greek, Chinese, Japanese, Korean, Devanagari, Bengali,
Tamil, Telugu, Arabic, Thai): its words and its fonts, which come only from
installed Debian packages (``training.scripts``); a script without its fonts
is left out. Till receipts stay Latin (a monospaced face).
Everything random is drawn from the ``rng`` passed in, so a seed gives the
same meme on the same set of installed fonts.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from processing.transform import DEFAULT_FIT, LETTERBOX_FILL, fit_image

from .scripts import Script, available_scripts, breakable, font_path, pick_script

MAX_SYNTH = 0.5   # of a batch's non-memes: each synthesised meme needs an uncaptioned partner in its batch

STYLES = ("impact", "bar", "labels", "panels", "comic", "tweet", "subtitle", "sticker")
RENDER = 2   # draw at twice the picture's side, then fit back down: strokes come out anti-aliased like real memes
MIN_FONT = 6
SMALL_CAPTIONS = 0.25        # of the captions in every style: drawn small, as on many real memes ...
SMALL_SIZE = (0.03, 0.05)    # ... at this fraction of the picture's side

NONMEME_STYLES = ("poster", "screen", "page", "receipt", "chart", "dialog", "formula", "sign", "slide", "terminal")
# colours of designed text: titles and app bars are often saturated; memes' captions are black or white
ACCENTS = ((230, 40, 40), (250, 200, 30), (40, 120, 230), (30, 160, 90), (240, 240, 240), (200, 120, 255),
           (255, 140, 0))


@functools.cache
def font(spec: str, size: int) -> ImageFont.FreeTypeFont:
    """The face (``path`` or ``path#face``) at ``size`` pixels (at least MIN_FONT: a picture far wider than tall
    leaves little room)."""
    path, index = font_path(spec)
    return ImageFont.truetype(path, max(MIN_FONT, size), index=index)


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels. A run of CJK characters too long for a line breaks between any two
    of them (those scripts put no spaces between words); any other over-long word keeps its own line."""
    lines: list[str] = []
    for word in text.split():
        tokens = list(word) if breakable(word) and face.getlength(word) > width else [word]
        for k, token in enumerate(tokens):
            joined = f"{lines[-1]}{'' if k else ' '}{token}" if lines else token
            if lines and face.getlength(joined) <= width:
                lines[-1] = joined
            else:
                lines.append(token)
    return lines


def fitted_text(text: str, path: str, size: int, width: int, max_lines: int) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size up to ``size`` at which ``text`` wraps into ``max_lines`` lines of ``width``."""
    while True:
        face = font(path, size)
        lines = wrap(text, face, width)
        if size <= 8 or (len(lines) <= max_lines and all(face.getlength(s) <= width for s in lines)):
            return face, lines
        size = max(8, int(size * 0.85))


def caption_px(rng: np.random.Generator, length: int, lo: float, hi: float) -> int:
    """A caption's font size: ``lo``-``hi`` of ``length`` (the picture's side), or with probability
    SMALL_CAPTIONS only SMALL_SIZE of it."""
    a, b = SMALL_SIZE if rng.random() < SMALL_CAPTIONS else (lo, hi)
    return int(length * rng.uniform(a, b))


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


def impact(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    img = upscale(picture, side)
    side, height_px = img.size
    draw = ImageDraw.Draw(img)
    path = pick(rng, script.bold)
    where = ("top", "bottom") if rng.random() < 0.6 else (("top",) if rng.random() < 0.5 else ("bottom",))
    for place in where:
        face, lines = fitted_text(script.phrase(rng).upper(), path, caption_px(rng, side, 0.08, 0.15),
                                  int(side * 0.94), 3)
        height = len(lines) * line_height(face)
        top = int(height_px * 0.02) if place == "top" else height_px - height - int(height_px * 0.03)
        draw_lines(draw, lines, face, side // 2, top, "white", max(1, face.size // 12), "black")
    return img


def bar(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    pic = upscale(picture, side)
    side = pic.width
    path = pick(rng, script.regular + script.bold[:1])
    face, lines = fitted_text(script.phrase(rng, 4, 16), path, caption_px(rng, side, 0.06, 0.1), int(side * 0.92), 4)
    pad = int(side * 0.03)
    height = 2 * pad + len(lines) * line_height(face)
    img = Image.new("RGB", (side, pic.height + height), "white")
    img.paste(pic, (0, height))
    align = "center" if rng.random() < 0.5 else "left"
    draw_lines(ImageDraw.Draw(img), lines, face, side // 2, pad, "black", align=align, left=pad)
    return img


def labels(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    img = upscale(picture, side)
    side, height_px = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        path = pick(rng, script.bold)
        face, lines = fitted_text(script.phrase(rng, 1, 3), path, caption_px(rng, side, 0.06, 0.1),
                                  int(side * 0.45), 2)
        width = max(face.getlength(s) for s in lines)
        x = int(rng.uniform(0.02, 0.98) * max(0, side - width))
        y = int(rng.uniform(0.02, 0.98) * max(0, height_px - len(lines) * line_height(face)))
        if rng.random() < 0.5:
            draw_lines(draw, lines, face, 0, y, "white", max(1, face.size // 10), "black", align="left", left=x)
        else:
            fill = "black" if rng.random() < 0.7 else "white"
            draw_lines(draw, lines, face, 0, y, fill, 0, align="left", left=x)
    return img


def panels(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    n = 2 if rng.random() < 0.6 else 3
    beside = rng.random() < 0.5                       # Drake: caption cell beside each picture; else caption above
    cell = side // 2 if beside else side
    big = np.asarray(upscale(picture, side))
    crop_max = min(big.shape[:2])
    path = pick(rng, script.regular + script.bold)
    rows = []
    for _ in range(n):
        crop = int(crop_max * rng.uniform(0.5, 0.9))
        y0 = int(rng.integers(0, big.shape[0] - crop + 1))
        x0 = int(rng.integers(0, big.shape[1] - crop + 1))
        pic = Image.fromarray(np.ascontiguousarray(big[y0:y0 + crop, x0:x0 + crop])).resize((cell, cell),
                                                                                           Image.Resampling.BILINEAR)
        face, lines = fitted_text(script.phrase(rng, 2, 7), path, caption_px(rng, cell, 0.08, 0.14),
                                  int(cell * 0.9), 4)
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


def cover(picture: np.ndarray, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A random crop of ``picture`` with the aspect of width x height, resized to fill it exactly."""
    h, w = picture.shape[:2]
    scale = min(w / width, h / height) * rng.uniform(0.7, 1.0)
    cw, ch = max(1, int(width * scale)), max(1, int(height * scale))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = np.ascontiguousarray(picture[y0:y0 + ch, x0:x0 + cw])
    return Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR)


def line_art(picture: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture as a drawing: dark edges on white, over flat pale colours or none."""
    grey = picture.convert("L").filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    edges = grey.filter(ImageFilter.FIND_EDGES)
    ink = np.asarray(edges) > rng.uniform(12, 30)
    if rng.random() < 0.5:
        flat = np.asarray(ImageOps.posterize(picture.filter(ImageFilter.GaussianBlur(2)), 2)).astype(np.float32)
        paper = (flat * 0.35 + 255 * 0.65).astype(np.uint8)
    else:
        paper = np.full((*ink.shape, 3), 255, np.uint8)
    paper[ink] = 20
    return Image.fromarray(paper)


def balloon(draw: ImageDraw.ImageDraw, text: str, path: str, box: tuple[int, int, int, int],
            rng: np.random.Generator) -> None:
    """A speech balloon with ``text`` in the upper part of ``box`` (x0, y0, x1, y1), tail pointing down."""
    x0, y0, x1, y1 = box
    width = int((x1 - x0) * rng.uniform(0.5, 0.85))
    face, lines = fitted_text(text, path, caption_px(rng, x1 - x0, 0.07, 0.11), int(width * 0.8), 3)
    height = len(lines) * line_height(face) + face.size
    left = x0 + int(rng.uniform(0.03, 0.97) * max(0, x1 - x0 - width))
    top = y0 + int((y1 - y0) * 0.04)
    tail_x = left + width // 2 + int(rng.uniform(-0.3, 0.3) * width)
    draw.polygon([(tail_x - width // 10, top + height - 2), (tail_x + width // 10, top + height - 2),
                  (tail_x, top + height + height // 2)], fill="white", outline="black")
    draw.ellipse((left, top, left + width, top + height), fill="white", outline="black", width=2)
    draw_lines(draw, lines, face, left + width // 2, top + face.size // 2, "black")


def comic(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    rows, cols = ((2, 2), (1, 3), (3, 1), (1, 2), (2, 1))[int(rng.integers(5))]
    gutter = max(2, side // 40)
    cell_w, cell_h = (side - gutter * (cols + 1)) // cols, (side - gutter * (rows + 1)) // rows
    drawing = line_art(upscale(picture, side), rng)
    art = np.asarray(drawing)
    out = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(out)
    path = pick(rng, script.bold + script.regular)
    for r in range(rows):
        for c in range(cols):
            x0, y0 = gutter + c * (cell_w + gutter), gutter + r * (cell_h + gutter)
            out.paste(cover(art, cell_w, cell_h, rng), (x0, y0))
            draw.rectangle((x0, y0, x0 + cell_w, y0 + cell_h), outline="black", width=max(2, side // 120))
            if rng.random() < 0.75:
                words = script.phrase(rng, 1, 5)
                balloon(draw, words.upper() if rng.random() < 0.5 else words, path,
                        (x0, y0, x0 + cell_w, y0 + cell_h), rng)
    return out


def tweet(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    dark = rng.random() < 0.3
    background, ink, grey = ((21, 32, 43), (240, 240, 240), (136, 153, 166)) if dark else \
        ((255, 255, 255), (15, 20, 25), (101, 119, 134))
    bold, regular = script.bold, script.regular
    pad = int(side * 0.05)
    face, lines = fitted_text(script.phrase(rng, 4, 20), pick(rng, regular), caption_px(rng, side, 0.05, 0.075),
                              side - 2 * pad, 5)
    avatar = int(side * 0.12)
    with_picture = rng.random() < 0.6
    pic = upscale(picture, side - 2 * pad) if with_picture else None
    height = pad + avatar + pad // 2 + len(lines) * line_height(face) + pad + (pic.height + pad if pic else 0) \
        + int(side * 0.06)
    img = Image.new("RGB", (side, height), background)
    draw = ImageDraw.Draw(img)
    mask = Image.new("L", (avatar, avatar), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, avatar - 1, avatar - 1), fill=255)
    img.paste(cover(picture, avatar, avatar, rng), (pad, pad), mask)
    name = font(pick(rng, bold), int(avatar * 0.38))
    draw.text((pad * 3 // 2 + avatar, pad), script.phrase(rng, 1, 2).title(), font=name, fill=ink)
    handle = font(pick(rng, regular), int(avatar * 0.3))
    draw.text((pad * 3 // 2 + avatar, pad + int(avatar * 0.5)), "@" + script.phrase(rng, 1, 1), font=handle, fill=grey)
    y = draw_lines(draw, lines, face, 0, pad + avatar + pad // 2, ink, align="left", left=pad) + pad // 2
    if pic is not None:
        img.paste(pic, (pad, y))
        y += pic.height + pad
    for k in range(4):                                           # reply, repost, like, share
        cx, r = pad + int(k * (side - 2 * pad) / 4) + avatar // 4, max(2, side // 80)
        draw.ellipse((cx - r, y - r + side // 50, cx + r, y + r + side // 50), outline=grey, width=2)
    return img


def subtitle(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    """A film still with a subtitle: one or two short lines of small white or yellow text, dark outline, near the
    bottom (the subtitled-still reaction format)."""
    width = side
    img = cover(picture, width, int(width * rng.uniform(0.42, 0.75)), rng)      # widescreen to 4:3 frames
    draw = ImageDraw.Draw(img)
    path = pick(rng, script.regular + script.bold)
    n = 1 if rng.random() < 0.6 else 2
    face, lines = fitted_text(script.phrase(rng, 2, 4 * n), path, int(width * rng.uniform(0.045, 0.07)),
                              int(width * 0.9), n)
    fill = "white" if rng.random() < 0.7 else (250, 225, 40)
    top = img.height - int(img.height * rng.uniform(0.04, 0.1)) - len(lines) * line_height(face)
    draw_lines(draw, lines, face, width // 2, top, fill, max(1, face.size // 10), (10, 10, 10))
    return img


def sticker(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    """A sticker: a character or object cut out (a soft blob of the picture) on white, a short caption above or
    below it, often with an outline (the captioned-sticker reaction images)."""
    img = Image.new("RGB", (side, side), "white")
    cut = int(side * rng.uniform(0.55, 0.75))
    art = cover(picture, cut, cut, rng)
    mask = Image.new("L", (cut, cut), 0)
    inset = [int(cut * rng.uniform(0.0, 0.12)) for _ in range(4)]
    ImageDraw.Draw(mask).ellipse((inset[0], inset[1], cut - 1 - inset[2], cut - 1 - inset[3]), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(cut * 0.01))
    above = rng.random() < 0.35
    caption_h = side - cut
    img.paste(art, ((side - cut) // 2, caption_h if above else 0), mask)
    face, lines = fitted_text(script.phrase(rng, 1, 4), pick(rng, script.bold), caption_px(rng, side, 0.08, 0.14),
                              int(side * 0.92), 2)
    height = len(lines) * line_height(face)
    top = (caption_h - height) // 2 if above else cut + (caption_h - height) // 2
    outlined = rng.random() < 0.5
    fill = pick(rng, ((20, 20, 20), *ACCENTS[:4])) if not outlined else "white"
    draw_lines(ImageDraw.Draw(img), lines, face, side // 2, max(0, top), fill, max(1, face.size // 10) if outlined
               else 0, (20, 20, 20))
    return img


RENDERERS = {"impact": impact, "bar": bar, "labels": labels, "panels": panels, "comic": comic, "tweet": tweet,
             "subtitle": subtitle, "sticker": sticker}


def small_lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, script: Script, path: str, size: int,
                left: int, top: int, width: int, count: int, fill, align: str = "left") -> int:
    """``count`` lines of small running text in a column; returns the y below them."""
    face = font(path, size)
    for _ in range(count):
        line = wrap(script.phrase(rng, 4, 14), face, width)[0]
        x = left + (width - face.getlength(line)) / 2 if align == "center" else left
        draw.text((x, top), line, font=face, fill=fill)
        top += line_height(face)
    return top


def poster(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width = side
    height = int(width * rng.uniform(1.35, 1.55))               # one-sheets are about 2:3
    img = cover(picture, width, height, rng)
    shade = np.linspace(0, rng.uniform(0.5, 0.95), height // 3)[:, None, None]
    pixels = np.asarray(img).astype(np.float32)
    pixels[-len(shade):] *= 1 - shade                           # darker towards the credits
    img = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    bold, regular = script.bold, script.regular
    title = script.phrase(rng, 1, 3)
    title = title.upper() if rng.random() < 0.7 else title.title()
    face, lines = fitted_text(title, pick(rng, bold), int(width * rng.uniform(0.1, 0.17)), int(width * 0.9), 2)
    colour = pick(rng, ACCENTS)
    top = int(height * (rng.uniform(0.05, 0.2) if rng.random() < 0.4 else rng.uniform(0.55, 0.68)))
    if rng.random() < 0.5:                                       # a soft drop shadow, not a meme's outline
        draw_lines(draw, lines, face, width // 2 + max(1, face.size // 20), top + max(1, face.size // 20), (0, 0, 0))
    draw_lines(draw, lines, face, width // 2, top, colour)
    small_lines(draw, rng, script, pick(rng, regular), int(width * 0.035), int(width * 0.1), int(height * 0.02),
                int(width * 0.8), 1, (235, 235, 235), "center")
    credits = int(rng.integers(2, 5))
    path = pick(rng, regular)
    size = int(width * rng.uniform(0.02, 0.03))
    small_lines(draw, rng, script, path, size, int(width * 0.08), height - int(height * 0.04)
                - credits * line_height(font(path, size)), int(width * 0.84), credits, (190, 190, 190), "center")
    return img


def screen(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width = side
    height = int(width * rng.uniform(1.6, 2.1))                 # a phone held upright
    dark = rng.random() < 0.4
    background, ink, grey = ((18, 18, 18), (235, 235, 235), (150, 150, 150)) if dark else \
        ((255, 255, 255), (20, 20, 20), (110, 110, 110))
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    bold, regular = script.bold, script.regular
    path = pick(rng, regular)
    accent = pick(rng, ACCENTS)
    status, appbar = int(height * 0.03), int(height * 0.06)
    draw.rectangle((0, 0, width, status + appbar), fill=accent if rng.random() < 0.6 else background)
    small_lines(draw, rng, script, path, int(status * 0.7), int(width * 0.03), 0, int(width * 0.2), 1, ink)
    face = font(pick(rng, bold), int(appbar * 0.45))
    draw.text((int(width * 0.05), status + appbar // 4), script.phrase(rng, 1, 2).title(), font=face, fill=ink)
    y = status + appbar + int(width * 0.02)
    cards = rng.random() < 0.4                                  # full-width thumbnails (video feeds) or list rows
    while y < height - int(height * 0.08):
        if cards:
            thumb_w, thumb_h = int(width * 0.94), int(width * 0.94 * 9 / 16)
            img.paste(cover(picture, thumb_w, thumb_h, rng), (int(width * 0.03), y))
            y = small_lines(draw, rng, script, path, int(width * 0.035), int(width * 0.03),
                            y + thumb_h + int(width * 0.02),
                            int(width * 0.94), 2, ink)
            y = small_lines(draw, rng, script, path, int(width * 0.028), int(width * 0.03), y, int(width * 0.94), 1,
                            grey)
        else:
            thumb = int(width * rng.uniform(0.18, 0.3))
            img.paste(cover(picture, thumb, thumb, rng), (int(width * 0.03), y))
            text_left = int(width * 0.06) + thumb
            below = small_lines(draw, rng, script, path, int(width * 0.035), text_left, y, width - text_left, 2, ink)
            small_lines(draw, rng, script, path, int(width * 0.028), text_left, below, width - text_left, 1, grey)
            y += thumb
        y += int(width * 0.04)
    draw.rectangle((0, height - int(height * 0.06), width, height), fill=background)
    icons = int(rng.integers(3, 6))                             # bottom navigation icons
    for k in range(icons):
        cx, cy, r = int(width * (k + 0.5) / icons), height - int(height * 0.03), int(height * 0.01)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=grey)
    return img


def page(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width = side
    height = int(width * rng.uniform(0.7, 1.5))
    paper = (255, 255, 255) if rng.random() < 0.7 else (245, 240, 228)
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    bold, regular = script.bold, script.regular
    path = pick(rng, regular)
    margin = int(width * 0.05)
    y = margin
    if rng.random() < 0.5:                                      # a site's navigation bar
        draw.rectangle((0, 0, width, int(height * 0.06)), fill=pick(rng, ACCENTS))
        y = int(height * 0.06) + margin
    face, lines = fitted_text(script.phrase(rng, 3, 8).capitalize(), pick(rng, bold), int(width * 0.05),
                              width - 2 * margin, 2)
    y = draw_lines(draw, lines, face, 0, y, (20, 20, 20), align="left", left=margin) + margin // 2
    inset = int(width * rng.uniform(0.3, 0.5))
    inset_h = int(inset * rng.uniform(0.6, 1.2))
    on_left = rng.random() < 0.5
    inset_top = y
    img.paste(cover(picture, inset, inset_h, rng), (margin if on_left else width - margin - inset, inset_top))
    text_left = margin + inset + margin // 2 if on_left else margin
    size = int(width * rng.uniform(0.022, 0.032))
    column = width - 2 * margin - inset - margin // 2
    lines_beside = max(1, inset_h // line_height(font(path, size)))
    y = small_lines(draw, rng, script, path, size, text_left, y, column, lines_beside, (40, 40, 40))
    y = max(y, inset_top + inset_h + margin // 2)
    rest = max(0, (height - margin - y) // line_height(font(path, size)))
    small_lines(draw, rng, script, path, size, margin, y, width - 2 * margin, rest, (40, 40, 40))
    return img


def mono_font(size: int) -> ImageFont.FreeTypeFont:
    """matplotlib's DejaVu Sans Mono, the face of till receipts and terminals."""
    import matplotlib

    return font(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf"), size)


def receipt(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    """A scanned till receipt: a tall strip of small monospaced lines and prices, on the picture as its backing
    (flatbed scans often keep what the paper lay on)."""
    width = side
    height = int(width * rng.uniform(1.2, 1.8))
    img = cover(picture, width, height, rng)
    draw = ImageDraw.Draw(img)
    strip_w = int(width * rng.uniform(0.55, 0.8))
    left, top = int(rng.integers(0, width - strip_w + 1)), int(height * rng.uniform(0.0, 0.06))
    paper = tuple(int(v) for v in rng.integers(232, 256, 3))
    draw.rectangle((left, top, left + strip_w, height - int(height * rng.uniform(0.0, 0.06))), fill=paper)
    face = mono_font(int(strip_w * rng.uniform(0.035, 0.05)))
    ink, pad, y = (40, 40, 40), int(strip_w * 0.06), top + int(strip_w * 0.06)
    latin = available_scripts()["latin"]
    shop = latin.phrase(rng, 1, 3).upper()
    draw.text((left + (strip_w - face.getlength(shop)) / 2, y), shop, font=face, fill=ink)
    y += 2 * line_height(face)
    columns = int((strip_w - 2 * pad) / face.getlength("0"))
    while y < height - 3 * line_height(face):
        if rng.random() < 0.12:
            line = "-" * columns
        else:
            price = f"{rng.integers(0, 100)},{rng.integers(0, 100):02d}"
            item = latin.phrase(rng, 1, 3).upper()[:max(1, columns - len(price) - 1)]
            line = item + " " * max(1, columns - len(item) - len(price)) + price
        draw.text((left + pad, y), line, font=face, fill=ink)
        y += line_height(face)
    return img


def chart(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    """A dashboard panel: a titled bar or line chart with axes, ticks and small labels, the picture as a
    thumbnail card beside it (web-app and report UIs)."""
    width = side
    height = int(width * rng.uniform(0.6, 1.1))
    img = Image.new("RGB", (width, height), (255, 255, 255) if rng.random() < 0.8 else (248, 248, 250))
    draw = ImageDraw.Draw(img)
    bold, regular = script.bold, script.regular
    path, margin = pick(rng, regular), int(width * 0.04)
    title = font(pick(rng, bold), int(width * 0.035))
    draw.text((margin, margin), script.phrase(rng, 2, 5).capitalize(), font=title, fill=(30, 30, 30))
    thumb = int(width * rng.uniform(0.2, 0.3))
    img.paste(cover(picture, thumb, thumb, rng), (width - margin - thumb, margin))
    x0, y0 = margin + int(width * 0.08), margin + line_height(title) + int(height * 0.05)
    x1, y1 = width - 2 * margin - thumb, height - margin - int(height * 0.1)
    small = font(path, int(width * 0.022))
    grey = (120, 120, 120)
    draw.line((x0, y0, x0, y1), fill=grey, width=2)
    draw.line((x0, y1, x1, y1), fill=grey, width=2)
    for k in range(5):                                          # y ticks and their labels
        ty = y1 - (y1 - y0) * k // 4
        draw.line((x0 - 5, ty, x0, ty), fill=grey, width=2)
        draw.text((margin, ty - small.size // 2), str(int(k * rng.integers(5, 50))), font=small, fill=grey)
    n = int(rng.integers(4, 12))
    values = rng.uniform(0.1, 1.0, n)
    colour = pick(rng, ACCENTS[:4])
    step = (x1 - x0) / n
    points = [(x0 + step * (i + 0.5), y1 - (y1 - y0) * v) for i, v in enumerate(values)]
    if rng.random() < 0.5:
        for (cx, cy) in points:
            draw.rectangle((cx - step * 0.35, cy, cx + step * 0.35, y1), fill=colour)
    else:
        draw.line(points, fill=colour, width=max(2, width // 150))
    for i, (cx, _) in enumerate(points):                        # x labels
        label = script.phrase(rng, 1, 1)
        draw.text((cx - small.getlength(label) / 2, y1 + 4), label, font=small, fill=grey)
    small_lines(draw, rng, script, path, int(width * 0.022), width - margin - thumb, margin + thumb + margin // 2,
                thumb,
                max(1, (height - thumb - 3 * margin) // line_height(small)), (60, 60, 60))
    return img


def window(img: Image.Image, rng: np.random.Generator, box: tuple[int, int, int, int], title: str, face,
           dark: bool) -> tuple[ImageDraw.ImageDraw, int, tuple]:
    """A desktop window in ``box`` (x0, y0, x1, y1): a frame and a title bar with its buttons; returns the draw,
    the y below the title bar and the window's (background, ink, muted) colours."""
    background, ink, muted = ((43, 43, 43), (230, 230, 230), (150, 150, 150)) if dark else \
        ((246, 246, 246), (25, 25, 25), (110, 110, 110))
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    bar = int(line_height(face) * 1.6)
    draw.rectangle(box, fill=background, outline=(90, 90, 90), width=2)
    draw.rectangle((x0, y0, x1, y0 + bar), fill=(60, 60, 60) if dark else (222, 222, 222))
    draw.text((x0 + bar // 2, y0 + (bar - face.size) // 2), title, font=face, fill=ink)
    for k, colour in enumerate(((230, 80, 70), (240, 190, 60), (90, 190, 80)) if rng.random() < 0.5 else
                               ((150, 150, 150),) * 3):
        r = bar // 5
        cx = x1 - bar // 2 - k * bar * 2 // 3
        draw.ellipse((cx - r, y0 + bar // 2 - r, cx + r, y0 + bar // 2 + r), fill=colour)
    return draw, y0 + bar, (background, ink, muted)


def dialog(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width, height = side, int(side * rng.uniform(0.6, 0.9))
    img = cover(picture, width, height, rng)                    # the desktop behind the dialog
    path = pick(rng, script.regular)
    face = font(path, int(width * rng.uniform(0.026, 0.034)))
    w, h = int(width * rng.uniform(0.6, 0.85)), int(height * rng.uniform(0.45, 0.7))
    x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    draw, top, (background, ink, muted) = window(img, rng, (x0, y0, x0 + w, y0 + h),
                                                 script.phrase(rng, 1, 3).capitalize(), face, rng.random() < 0.35)
    pad = int(w * 0.05)
    icon = int(w * 0.1)
    draw.ellipse((x0 + pad, top + pad, x0 + pad + icon, top + pad + icon), fill=pick(rng, ACCENTS[:3]))
    text_left = x0 + 2 * pad + icon
    y = small_lines(draw, rng, script, path, face.size, text_left, top + pad, x0 + w - pad - text_left,
                    int(rng.integers(1, 4)), ink)
    if rng.random() < 0.5:                                      # an input field
        y += pad // 2
        draw.rectangle((text_left, y, x0 + w - pad, y + line_height(face) + 6), fill="white" if background[0] > 100
                       else (30, 30, 30), outline=muted)
        y += line_height(face) + 6
    buttons = int(rng.integers(1, 4))
    bw, bh = int(w * 0.22), line_height(face) + pad // 2
    by = max(y + pad // 2, y0 + h - pad - bh)
    for k in range(buttons):
        bx = x0 + w - pad - (k + 1) * bw - k * pad // 2
        default = k == 0
        draw.rounded_rectangle((bx, by, bx + bw, by + bh), radius=bh // 4,
                               fill=pick(rng, ACCENTS[2:4]) if default else background, outline=muted)
        label = script.phrase(rng, 1, 1)
        draw.text((bx + (bw - face.getlength(label)) / 2, by + (bh - face.size) / 2), label, font=face,
                  fill="white" if default else ink)
    return img


FORMULAS = (r"$\int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}$", r"$\sum_{n=1}^{N} n = \frac{N(N+1)}{2}$",
            r"$e^{i\pi} + 1 = 0$", r"$\nabla \cdot \mathbf{E} = \frac{\rho}{\varepsilon_0}$",
            r"$f(x) = \frac{1}{\sigma\sqrt{2\pi}} e^{-\frac{(x-\mu)^2}{2\sigma^2}}$",
            r"$\lim_{h \to 0} \frac{f(x+h) - f(x)}{h}$", r"$a^2 + b^2 = c^2$",
            r"$\det(A - \lambda I) = 0$", r"$P(A|B) = \frac{P(B|A)\,P(A)}{P(B)}$",
            r"$\mathcal{L}(\theta) = -\sum_i y_i \log \hat{y}_i$", r"$x_{1,2} = \frac{-b \pm \sqrt{b^2-4ac}}{2a}$",
            r"$\frac{\partial u}{\partial t} = \alpha \nabla^2 u$", r"$\oint_C \mathbf{F} \cdot d\mathbf{r}$")


MATHTEXT = threading.Lock()   # mathtext's parser is not thread-safe, and the training's readers are threads


@functools.cache
def typeset(formula: str, size: int) -> Image.Image:
    """``formula`` typeset by matplotlib's mathtext (no TeX needed), black on transparent, about ``size`` px."""
    import io

    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buf = io.BytesIO()
    with MATHTEXT:
        mathtext.math_to_image(formula, buf, prop=FontProperties(size=size), dpi=72, format="png")
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGBA")


def matrix(draw: ImageDraw.ImageDraw, rng: np.random.Generator, left: int, top: int, size: int) -> int:
    """A bracketed matrix of small numbers; returns the y below it."""
    face = mono_font(size)
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    cell_w, cell_h = int(face.getlength("-00") * 1.3), line_height(face)
    right, bottom = left + cols * cell_w + size, top + rows * cell_h
    for x, sign in ((left, 1), (right, -1)):                    # the brackets
        draw.line((x, top, x, bottom), fill=(20, 20, 20), width=2)
        for y in (top, bottom):
            draw.line((x, y, x + sign * size // 3, y), fill=(20, 20, 20), width=2)
    for r in range(rows):
        for c in range(cols):
            draw.text((left + size // 2 + c * cell_w, top + r * cell_h), str(int(rng.integers(-9, 10))), font=face,
                      fill=(20, 20, 20))
    return bottom


def formula(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width, height = side, int(side * rng.uniform(0.65, 1.2))
    img = Image.new("RGB", (width, height), (255, 255, 255) if rng.random() < 0.7 else (250, 248, 240))
    draw = ImageDraw.Draw(img)
    margin = int(width * 0.05)
    heading = font(pick(rng, script.bold), int(width * 0.04))
    y = draw_lines(draw, [script.phrase(rng, 2, 4).capitalize()], heading, 0, margin, (20, 20, 20), align="left",
                   left=margin) + margin // 2
    thumb = int(width * rng.uniform(0.22, 0.32))
    img.paste(cover(picture, thumb, thumb, rng), (width - margin - thumb, y))
    size = int(width * rng.uniform(0.028, 0.04))
    while y < height - margin - 2 * size:
        if rng.random() < 0.2:
            y = matrix(draw, rng, margin, y, size) + size // 2
        else:
            eq = typeset(pick(rng, FORMULAS), size // 2 * 2)      # even sizes: the typeset formulas are cached
            if eq.width > width - 2 * margin:
                eq = eq.resize((width - 2 * margin, max(1, eq.height * (width - 2 * margin) // eq.width)))
            img.paste(eq, (margin + int(rng.integers(0, max(1, width // 8))), y), eq)
            y += eq.height + size // 2
        if rng.random() < 0.4:                                  # a line of prose between the formulas
            y = small_lines(draw, rng, script, pick(rng, script.regular), int(size * 0.8), margin, y,
                            width - 3 * margin - thumb, 1, (50, 50, 50))
    return img


def sign(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width, height = side, int(side * rng.uniform(0.7, 1.3))
    img = cover(picture, width, height, rng)
    pw, ph = int(width * rng.uniform(0.45, 0.75)), int(height * rng.uniform(0.2, 0.35))
    colour = pick(rng, ((20, 90, 50), (30, 60, 140), (200, 40, 40), (240, 240, 235), (250, 200, 30), (20, 20, 20)))
    panel = Image.new("RGB", (pw, ph), colour)
    draw = ImageDraw.Draw(panel)
    ink = (20, 20, 20) if sum(colour) > 450 else (250, 250, 250)
    draw.rectangle((3, 3, pw - 4, ph - 4), outline=ink, width=max(2, pw // 60))
    face, lines = fitted_text(script.phrase(rng, 1, 4), pick(rng, script.bold), int(ph * 0.35), int(pw * 0.85), 2)
    top = (ph - len(lines) * line_height(face)) // 2
    draw_lines(draw, lines, face, pw // 2, top, ink)
    shade = np.linspace(rng.uniform(0.55, 1.0), rng.uniform(0.8, 1.1), pw)[None, :, None]    # uneven light
    panel = Image.fromarray(np.clip(np.asarray(panel) * shade, 0, 255).astype(np.uint8))
    # the panel seen in perspective: its four corners moved, then pasted by a mask of the same quadrilateral
    j = [int(d * rng.uniform(0.0, 0.18)) for d in (pw, ph, pw, ph)]
    quad = [(j[0], j[1]), (pw - j[2], 0), (pw, ph - j[3]), (0, ph)]
    coeffs = perspective_coefficients(quad, [(0, 0), (pw, 0), (pw, ph), (0, ph)])
    seen = panel.transform((pw, ph), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    mask = Image.new("L", (pw, ph), 0)
    ImageDraw.Draw(mask).polygon(quad, fill=255)
    x, y = int(rng.integers(0, width - pw + 1)), int(rng.integers(0, height - ph + 1))
    img.paste(seen, (x, y), mask)
    return img


def perspective_coefficients(dst: list[tuple[int, int]], src: list[tuple[int, int]]) -> list[float]:
    """The 8 coefficients Pillow's PERSPECTIVE transform takes to map output points ``dst`` to input ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def slide(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width, height = side, int(side * 9 / 16)
    dark = rng.random() < 0.3
    img = Image.new("RGB", (width, height), (30, 34, 40) if dark else (255, 255, 255))
    draw = ImageDraw.Draw(img)
    ink = (235, 235, 235) if dark else (30, 30, 30)
    margin = int(width * 0.05)
    accent = pick(rng, ACCENTS[:4])
    draw.rectangle((0, 0, width, int(height * 0.03)), fill=accent)
    face, lines = fitted_text(script.phrase(rng, 2, 5).capitalize(), pick(rng, script.bold), int(width * 0.045),
                              int(width * 0.9), 1)
    y = draw_lines(draw, lines, face, 0, int(height * 0.08), ink, align="left", left=margin) + margin // 2
    thumb = int(width * rng.uniform(0.28, 0.38))
    img.paste(cover(picture, thumb, int(thumb * 0.75), rng), (width - margin - thumb, y))
    size = int(width * rng.uniform(0.024, 0.032))
    path = pick(rng, script.regular)
    for _ in range(int(rng.integers(3, 6))):
        r = size // 4
        draw.ellipse((margin, y + size // 2 - r, margin + 2 * r, y + size // 2 + r), fill=accent)
        y = small_lines(draw, rng, script, path, size, margin + 4 * r, y, width - 3 * margin - thumb - 4 * r, 1, ink)
        y += size // 3
    return img


def terminal(picture: np.ndarray, rng: np.random.Generator, side: int, script: Script) -> Image.Image:
    width, height = side, int(side * rng.uniform(0.6, 0.9))
    img = cover(picture, width, height, rng)                    # the desktop behind the window
    face = mono_font(int(width * rng.uniform(0.022, 0.03)))
    w, h = int(width * rng.uniform(0.7, 0.95)), int(height * rng.uniform(0.6, 0.9))
    x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    title = font(pick(rng, script.regular), face.size)         # the monospaced face is Latin only
    draw, top, _ = window(img, rng, (x0, y0, x0 + w, y0 + h), script.phrase(rng, 1, 2), title, True)
    draw.rectangle((x0 + 2, top, x0 + w - 2, y0 + h - 2), fill=(24, 24, 28))
    editor = rng.random() < 0.5
    colours = ((220, 220, 220), (120, 200, 120), (100, 160, 240), (230, 180, 90), (200, 120, 220))
    y, n = top + 4, 1
    words = ("def", "return", "for", "in", "if", "import", "class", "self", "None", "True", "print", "x", "y",
             "data", "model", "=", "==", "+", "(", ")", ":", "[", "]", "0", "1", "42")
    while y < y0 + h - line_height(face):
        x = x0 + 6
        if editor:                                              # line numbers, then indented code
            draw.text((x, y), f"{n:3d}", font=face, fill=(110, 110, 110))
            x += int(face.getlength("0000")) + int(rng.integers(0, 3)) * int(face.getlength("    "))
        else:
            draw.text((x, y), "$", font=face, fill=colours[1])
            x += int(face.getlength("$ "))
        for _ in range(int(rng.integers(1, 7))):
            token = pick(rng, words)
            if x + face.getlength(token) > x0 + w - 6:
                break
            draw.text((x, y), token, font=face, fill=pick(rng, colours))
            x += int(face.getlength(token + " "))
        y += line_height(face)
        n += 1
    return img


NONMEME_RENDERERS = {"poster": poster, "screen": screen, "page": page, "receipt": receipt, "chart": chart,
                     "dialog": dialog, "formula": formula, "sign": sign, "slide": slide, "terminal": terminal}


def render(table: dict, kind: str, picture: np.ndarray, rng: np.random.Generator, style: str | None,
           fit: str, styles: tuple[str, ...] | None = None, scripts: tuple[str, ...] | None = None) -> np.ndarray:
    """``picture`` (square uint8 RGB) drawn by ``table[style]`` (if None, a random one of ``styles``, by default
    every style of ``table``) in a script of ``scripts`` (``scripts.pick_script``), fitted back to its side.

    Letterbox bands are trimmed first, so the drawing uses the picture, not the grey; the canvas is sized from
    the square's side, so a picture far wider than tall is drawn as large as any other.
    """
    style = style or pick(rng, styles or tuple(table))
    if style not in table:
        raise ValueError(f"unknown {kind} style {style!r}; choose from {tuple(table)}")
    side = picture.shape[0]
    drawn = table[style](trim_fill(picture), rng, side * RENDER, pick_script(rng, scripts))
    return fit_image(np.asarray(drawn), fit, side)


def caption_meme(picture: np.ndarray, rng: np.random.Generator, style: str | None = None,
                 fit: str = DEFAULT_FIT, styles: tuple[str, ...] | None = None,
                 scripts: tuple[str, ...] | None = None) -> np.ndarray:
    """``picture`` captioned in one of ``STYLES`` (or of ``styles``): a meme."""
    return render(RENDERERS, "caption", picture, rng, style, fit, styles, scripts)


def text_nonmeme(picture: np.ndarray, rng: np.random.Generator, style: str | None = None,
                 fit: str = DEFAULT_FIT, scripts: tuple[str, ...] | None = None) -> np.ndarray:
    """``picture`` made into designed text in one of ``NONMEME_STYLES``: still not a meme."""
    return render(NONMEME_RENDERERS, "text non-meme", picture, rng, style, fit, scripts=scripts)
