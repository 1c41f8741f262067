"""The real folders of ``../shared/data``, found from their layout rather than listed.

The layout (its MANIFEST.md): ``memes/<family>/...`` holds memes,
``nonmemes-*/...`` and ``photos/...`` non-memes, ``tiny/...`` 32x32 pictures.
Every folder that holds files directly is a *source* (a repository's folder
``<owner>_<repo>``, a template folder of advice-animals, a photo set, a CIFAR
class). Its *family* is the folder under ``memes/`` for memes, else the
top-level name (``nonmemes-text2``, ``photos``, ``tiny``). A folder added to the
shared data therefore joins the default data, the demo, the report and the
cross-validation without a code change. Other top-level folders (``csv``,
``fixtures``) are not pictures and are passed over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from processing.schema import MEME, NON_MEME
from processing.sources import folder_source

MEMES, PHOTOS, TINY = "memes", "photos", "tiny"
NON_MEME_PREFIX = "nonmemes-"


@dataclass(frozen=True)
class Source:
    """One folder of pictures that came from one place."""
    name: str      # its path below the shared data folder, e.g. memes/world/hindi/Gitanjali1801_CM_MEMES
    path: Path
    label: int
    family: str    # memes: the folder under memes/; non-memes: nonmemes-*, photos or tiny

    @property
    def tiny(self) -> bool:
        return self.family == TINY

    @property
    def key(self) -> str:
        """The ``source`` value of its rows in a dataset built with ``--source-root`` at the shared folder."""
        return folder_source(self.path, tiny=self.tiny, under=self.path.parents[len(Path(self.name).parts) - 1])

    @property
    def origin(self) -> str:
        """What a source shares with another that came from the same place: its folder's name. One repository
        filed under two kinds (``world3/japanese/X`` and ``world3/chinese-reaction/X``) is one origin."""
        return self.path.name


def _leaves(folder: Path) -> list[Path]:
    """``folder`` and every folder below it that holds files directly, sorted; hidden names left out."""
    out = []
    try:
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return out
    if any(e.is_file() for e in entries):
        out.append(folder)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            out += _leaves(Path(e.path))
    return out


def family_of(top: str, parts: tuple[str, ...]) -> tuple[str, int] | None:
    """(family, label) of a folder ``top/parts...`` below the shared folder, or None if it holds no pictures."""
    if top == MEMES:
        return (parts[0], MEME) if parts else None
    if top.startswith(NON_MEME_PREFIX) or top in (PHOTOS, TINY):
        return top, NON_MEME
    return None


def family_of_source(key: str) -> str:
    """The family of a dataset row's ``source``: its shared-data family where the source is a shared folder (a
    dataset built with ``--source-root`` at the shared folder: ``folder:memes/world2/...``), else the source itself
    (a crawl, CIFAR-100, a folder named without its place)."""
    kind, _, name = key.partition(":")
    parts = tuple(name.split("/")) if kind in ("folder", "tiny") else ()
    found = family_of(parts[0], parts[1:]) if parts else None
    return found[0] if found else key


def discover(shared: str | Path) -> list[Source]:
    """Every source folder of the shared data, memes first, then non-memes, each in path order."""
    shared = Path(shared)
    found = []
    for leaf in _leaves(shared):
        rel = leaf.relative_to(shared).parts
        kind = family_of(rel[0], rel[1:]) if rel else None   # files of the shared folder itself: its MANIFEST.md
        if kind is not None:
            found.append(Source("/".join(rel), leaf, kind[1], kind[0]))
    return sorted(found, key=lambda s: (-s.label, s.name))


def families(sources: list[Source]) -> list[str]:
    """Family names in table order: meme families, then non-meme families, tiny last."""
    seen: dict[str, int] = {}
    for s in sources:
        seen.setdefault(s.family, s.label)
    return sorted(seen, key=lambda f: (-seen[f], f == TINY, f))


def build_args(sources: list[Source], tiny_total: int) -> list[str]:
    """``processing.build_h5`` input arguments for ``sources`` (with ``--source-root`` they keep their names):
    ``tiny_total`` pictures in all from the tiny sources, as evenly as their count allows."""
    args = []
    tiny = [s for s in sources if s.tiny]
    for s in sources:
        if not s.tiny:
            args += ["--memes" if s.label == MEME else "--non-memes", str(s.path)]
    if tiny and tiny_total:
        per = max(1, tiny_total // len(tiny))
        for s in tiny:
            args += ["--tiny", str(s.path)]
        args += ["--tiny-count", str(per)]
    return args
