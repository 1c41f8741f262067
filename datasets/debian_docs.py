"""python datasets/debian_docs.py --out DIR [--packages gnumeric-doc=1.12.55-1,...] [--deb FILE ...]

Real text that is not a meme, offline and reproducible: the screenshots that
Debian's documentation packages ship (application windows, dialogs,
spreadsheets) and pages of their PDF manuals (formulas, tables, code),
extracted into ``DIR/<package>/`` for ``python -m processing.build_h5
--non-memes DIR`` (or ``training.cv --build-flags "--non-memes DIR"``: training folds only, never scored).

Each package is fetched at a pinned version with ``apt-get download`` (from
the Debian mirror the machine is configured with; ``--deb FILE`` takes a
.deb on disk instead) and unpacked with ``dpkg-deb -x``; nothing is installed.
Pictures (PNG, JPEG) with a short side of at least ``--min-side`` pixels are
copied (icons and bullets are not); PDFs are rendered with ``pdftoppm``
(Debian's poppler-utils), ``--pdf-pages`` pages spread evenly over each.
At most ``--max-per-package`` pictures a package, drawn by ``--seed``.
``DIR/PROVENANCE.csv`` names, for every file written, the package, its
version, the path inside the package, the PDF page (or empty) and the file's
SHA-256. A package is written to a temporary folder and renamed when whole,
so a killed run leaves nothing half done and a re-run skips the packages
already there. Nothing is committed to the repository.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processing.cliutil import ArgumentParser, UsageError, count, file_digest, positive_int, run_main  # noqa: E402
from processing.files import escape_name, writable_folder  # noqa: E402

# Debian 12's documentation packages with the most screenshots and manual pages (pinned: the same files each run)
PACKAGES = ("gnumeric-doc=1.12.55-1", "octave-doc=7.3.0-2", "gnuplot-doc=5.4.4+dfsg1-2", "maxima-doc=5.46.0-11")
PICTURES = {".png", ".jpg", ".jpeg"}
PROVENANCE = "PROVENANCE.csv"
FIELDS = ("package", "version", "path", "page", "file", "sha256")


def pick(paths: list[str], limit: int, seed: int) -> list[str]:
    """At most ``limit`` of ``paths``, the same ones for the same seed whatever the order they came in."""
    ranked = sorted(paths, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return sorted(ranked[:limit])


def spread(pages: int, wanted: int) -> list[int]:
    """``wanted`` page numbers (1-based) spread evenly over ``pages``."""
    if pages <= wanted:
        return list(range(1, pages + 1))
    return sorted({1 + round(i * (pages - 1) / max(1, wanted - 1)) for i in range(wanted)})


def flat_name(path: str, page: int | None = None) -> str:
    """A file name for ``path`` inside a package: its folders joined by ``__``, a PDF page as ``-pNNN.png``."""
    name = path.strip("/").replace("/", "__")
    return f"{name}-p{page:03d}.png" if page is not None else name


def big_enough(path: Path, min_side: int) -> bool:
    try:
        with Image.open(path) as img:
            return min(img.size) >= min_side
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"{what} failed: {last}")
    return r.stdout


def fetch(spec: str, into: Path) -> Path:
    """``apt-get download`` of ``name=version`` into ``into``; the .deb."""
    run(["apt-get", "download", spec], f"apt-get download {spec} (is it in this machine's Debian sources?)", cwd=into)
    debs = list(into.glob("*.deb"))
    if len(debs) != 1:
        raise UsageError(f"apt-get download {spec} left {len(debs)} .deb files")
    return debs[0]


def deb_identity(deb: Path) -> tuple[str, str]:
    out = run(["dpkg-deb", "--show", "--showformat=${Package}\t${Version}", str(deb)], f"dpkg-deb --show {deb}")
    name, version = out.strip().split("\t")
    return name, version


def extract(deb: Path, out: Path, args) -> list[dict]:
    """The package's pictures and rendered PDF pages written under ``out``; their provenance rows."""
    name, version = deb_identity(deb)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb}")
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        pictures = [f for f in files if Path(f).suffix.lower() in PICTURES and big_enough(root / f, args.min_side)]
        pdfs = [f for f in files if Path(f).suffix.lower() == ".pdf"]
        rows = []
        for rel in pick(pictures, args.max_per_package, args.seed):
            shutil.copyfile(root / rel, out / flat_name(rel))
            rows.append({"path": rel, "page": "", "file": flat_name(rel)})
        room = max(0, args.max_per_package - len(rows))
        for rel in pdfs:
            if room <= 0 or not args.pdf_pages:
                break
            info = run(["pdfinfo", str(root / rel)], f"pdfinfo {rel} (Debian's poppler-utils)")
            pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
            for page in spread(pages, min(args.pdf_pages, room)):
                stem = Path(tmp) / "page"
                run(["pdftoppm", "-r", str(args.dpi), "-png", "-singlefile", "-f", str(page), "-l", str(page),
                     str(root / rel), str(stem)], f"pdftoppm {rel} page {page}")
                shutil.move(f"{stem}.png", out / flat_name(rel, page))
                rows.append({"path": rel, "page": page, "file": flat_name(rel, page)})
                room -= 1
    return [{"package": name, "version": version, **r, "sha256": file_digest(out / r["file"])} for r in rows]


def write_provenance(out: Path) -> int:
    """``PROVENANCE.csv`` from every package folder's own rows (written atomically); the number of rows."""
    rows = []
    for part in sorted(out.glob("*/.provenance.csv")):
        with open(part, newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    tmp = out / f".{PROVENANCE}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / PROVENANCE)
    return len(rows)


def add_package(deb: Path, out: Path, args) -> str:
    name, version = deb_identity(deb)
    final = out / name
    if (final / ".provenance.csv").exists():
        return f"{name} {version}: already there, skipped"
    part = out / f".{name}.partial"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    rows = extract(deb, part, args)
    with open(part / ".provenance.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows({**r, "file": f"{name}/{r['file']}"} for r in rows)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(part, final)
    return f"{name} {version}: {len(rows)} pictures"


def tools_missing(need_apt: bool) -> list[str]:
    tools = ["dpkg-deb", "pdftoppm", "pdfinfo"] + (["apt-get"] if need_apt else [])
    return [t for t in tools if shutil.which(t) is None]


def parse_args(argv=None):
    p = ArgumentParser(prog="python datasets/debian_docs.py", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="folder for the pictures and PROVENANCE.csv")
    p.add_argument("--packages", default=",".join(PACKAGES),
                   help="name=version,... to apt-get download (default: %(default)s)")
    p.add_argument("--deb", type=Path, action="append", default=[], metavar="FILE",
                   help="a .deb on disk instead of --packages (repeatable)")
    p.add_argument("--max-per-package", type=positive_int, default=400)
    p.add_argument("--pdf-pages", type=count, default=40, help="pages rendered per PDF (default 40)")
    p.add_argument("--dpi", type=positive_int, default=60, help="PDF rendering resolution (default 60)")
    p.add_argument("--min-side", type=positive_int, default=96, help="smaller pictures (icons) are left out")
    p.add_argument("--seed", type=count, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    missing = tools_missing(need_apt=not args.deb)
    if missing:
        raise UsageError(f"needs {', '.join(missing)}: install Debian's dpkg, poppler-utils and apt "
                         f"(scripts/system-deps installs poppler-utils)")
    for deb in args.deb:
        if not deb.is_file():
            raise UsageError(f"--deb {escape_name(str(deb))} is not a file: give a .deb package")
    place, problem = writable_folder(args.out)
    if problem:
        raise UsageError(f"--out {escape_name(str(args.out))}: {escape_name(str(place))} is {problem}: give a folder "
                         f"to write the pictures in")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.deb:
        for deb in args.deb:
            print(add_package(deb, args.out, args))
    else:
        for spec in filter(None, (s.strip() for s in args.packages.split(","))):
            with tempfile.TemporaryDirectory() as tmp:
                print(add_package(fetch(spec, Path(tmp)), args.out, args))
    print(f"{write_provenance(args.out)} pictures in {args.out} ({PROVENANCE} names each one's package and path)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("debian_docs", main))
