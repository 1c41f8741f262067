"""The embedded default for ``make demo``: a small corpus and the sites that serve it.

With ``../shared/data`` present, the corpus is real: Meme Generator-era
memes, CIFAR-10 test pictures (packed as a CIFAR-100-format tarball, the
stand-in for CIFAR-100) and full-resolution photos for the bias check.
Without it, the project draws its own: captioned pictures as memes, tiny
generated pictures as non-memes. Either way the memes are split between a
Library of Congress-style archive (with a CSV in the official UTF-16 TSV
format) and an imgur-style gallery, with a few realistic faults.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from processing.cifar import write_cifar100_tarball

TS = "20150508184553"
CAPTIONS = [("ONE DOES NOT SIMPLY", "WALK INTO MORDOR"), ("Y U NO", "WRITE TESTS"), ("SUCH DATA", "VERY HDF5"),
            ("I DON'T ALWAYS CRAWL", "BUT WHEN I DO I USE SCRAPY"), ("NOT SURE IF MEME", "OR JUST A PICTURE")]


@dataclass
class Corpus:
    kind: str                          # "real" or "generated"
    memes: list[tuple[Path, str]]      # (image file, template)
    tiny: np.ndarray                   # (N, 32, 32, 3) non-memes
    photos: Path | None                # full-resolution non-memes for the bias check


# ---- corpus ----------------------------------------------------------------
def _spread(items: list, n: int) -> list:
    if n >= len(items):
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def real_corpus(shared: Path, n_memes: int, n_tiny: int) -> Corpus:
    root = shared / "memes" / "advice-animals"
    memes = sorted((p, p.parent.name) for p in root.glob("*/*") if p.is_file())
    tiny_files = _spread(sorted((shared / "tiny" / "cifar10-test").glob("*/*")), n_tiny)
    tiny = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in tiny_files])
    return Corpus("real", _spread(memes, n_memes), tiny, shared / "photos")


def _caption(draw: ImageDraw.ImageDraw, text: str, y: int, width: int, size: int) -> None:
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(text, font=font) > width - 10:
        size -= 1
        font = ImageFont.load_default(size=size)
    w = draw.textlength(text, font=font)
    draw.text(((width - w) / 2, y), text, font=font, fill="white", stroke_width=max(1, size // 12), stroke_fill="black")


def generated_meme(seed: int, size: int = 250) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2) / size
    img = np.clip(base[None, None, :] * (1 - r[..., None]) + rng.normal(0, 12, (size, size, 3)), 0, 255)
    pic = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(pic)
    for _ in range(3):
        x0, y0 = rng.integers(size // 6, size // 2, 2)
        d.ellipse([x0, y0, x0 + rng.integers(size // 8, size // 3), y0 + rng.integers(size // 8, size // 3)], fill=tuple(rng.integers(0, 256, 3)))
    top, bottom = CAPTIONS[seed % len(CAPTIONS)]
    _caption(d, top, 8, size, 20)
    _caption(d, bottom, size - 34, size, 20)
    return pic


def generated_tiny(seed: int) -> np.ndarray:
    rng = np.random.default_rng(10_000 + seed)
    img = Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.integers(0, 24, 2)
        d.rectangle([x0, y0, x0 + rng.integers(4, 12), y0 + rng.integers(4, 12)], fill=tuple(rng.integers(0, 256, 3)))
    return np.asarray(img)


def generated_corpus(folder: Path, n_memes: int, n_tiny: int) -> Corpus:
    folder.mkdir(parents=True, exist_ok=True)
    memes = []
    for i in range(n_memes):
        path = folder / f"meme_{i:04d}.jpg"
        generated_meme(i).save(path, quality=90)
        memes.append((path, f"Generated Template {i % len(CAPTIONS)}"))
    tiny = np.stack([generated_tiny(i) for i in range(n_tiny)])
    return Corpus("generated", memes, tiny, None)


def make_corpus(out: Path, shared: Path | None, n_memes: int, n_tiny: int) -> Corpus:
    if shared is not None and (shared / "memes" / "advice-animals").is_dir():
        return real_corpus(shared, n_memes, n_tiny)
    return generated_corpus(out / "generated", n_memes, n_tiny)


# ---- sites -------------------------------------------------------------------
@dataclass
class Site:
    spec: Path          # for python -m crawler.mirror
    csv: Path           # Meme Generator file, official UTF-16 TSV layout
    cifar: Path         # CIFAR-100-format tarball of the tiny pictures
    cifar_md5: str
    loc_rows: int
    imgur_images: int


def _gif(seed: int) -> bytes:
    frames = [generated_meme(seed + k, 120) for k in range(2)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def write_site(corpus: Corpus, out: Path) -> Site:
    """Two thirds of the memes go to the archive, one third to the imgur gallery."""
    out.mkdir(parents=True, exist_ok=True)
    loc_memes = [m for i, m in enumerate(corpus.memes) if i % 3 != 2]
    imgur_memes = [m for i, m in enumerate(corpus.memes) if i % 3 == 2]
    faults = {0: "404", 1: "calendar", 2: "md5_wrong", 3: "flaky503", 4: "html_as_jpg"}
    loc, rows = [], []
    for i, (path, template) in enumerate(loc_memes):
        meme_id = str(10_000_000 + i)
        original = f"http://cdn.meme.am/instances/250x250/{meme_id}.jpg"
        data = path.read_bytes()
        fault = faults.get(i) if len(loc_memes) > 10 else None
        capture = {"timestamp": TS, "file": str(path)}
        if fault == "md5_wrong":
            capture["file"] = str(loc_memes[-1][0])   # the archive holds other bytes for this URL
            fault = None
        elif fault == "calendar":
            capture["timestamp"] = "20150601000000"
        loc.append({"original": original, "captures": [capture], "fault": fault})
        rows.append({"Meme ID": meme_id, "Archived URL": f"http://webarchive.loc.gov/all/{TS}/{original}",
                     "Base Meme Name": template, "Meme Page URL": f"http://memegenerator.net/instance/{meme_id}",
                     "MD5 Hash": hashlib.md5(data).hexdigest(), "File Size (In Bytes)": str(len(data)),
                     "Alternate Text": f"{template} meme"})
    csv_path = out / "memegenerator.tsv"
    with open(csv_path, "w", encoding="utf-16", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)

    images, entries = {}, []
    for i, (path, template) in enumerate(imgur_memes):
        image_id = f"dm{i:05d}"
        ext = path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
        images[image_id] = {"file": str(path), "content_type": f"image/{'jpeg' if ext == 'jpg' else ext}"}
        entries.append({"id": image_id, "title": template, "type": images[image_id]["content_type"], "animated": False,
                        "link": f"{{base}}/i/{image_id}.{ext}", "tags": [{"name": "meme"}], "is_album": False})
    gif = out / "animated.gif"
    gif.write_bytes(_gif(7))
    images["dmgif"] = {"file": str(gif), "content_type": "image/gif"}
    images["dmgone"] = {"file": None}
    extras = [{"id": "dmgif", "type": "image/gif", "animated": True, "link": "{base}/i/dmgif.gif", "is_album": False},
              {"id": "dmgone", "type": "image/jpeg", "animated": False, "link": "{base}/i/dmgone.jpg", "is_album": False}]
    albums = {}
    if len(entries) >= 6:   # one album inline, one through the album endpoint
        entries[0:2] = [{"id": "albinline", "is_album": True, "title": "an album", "images": entries[0:2]}]
        albums["albremote"] = entries[1:3]
        entries[1:3] = [{"id": "albremote", "is_album": True, "title": "another album"}]
    gallery = entries + extras
    pages = [gallery[i:i + 10] for i in range(0, len(gallery), 10)] + [[]]
    spec = out / "mirror.json"
    spec.write_text(json.dumps({"loc": loc, "imgur": {"client_id": "demo-client-id", "pages": pages,
                                                       "albums": albums, "images": images}}, indent=1))
    cifar = out / "cifar-100-python.tar.gz"
    md5 = write_cifar100_tarball(cifar, corpus.tiny)
    return Site(spec, csv_path, cifar, md5, len(rows), len(imgur_memes))
