"""Reading input files safely: loop-proof folder walks, capped reads of regular files only, lossless names.

Whatever sits in an input folder ends as exactly one entry: a file to read, or
a reason. Special files (FIFOs, devices, sockets) are never opened (opening a
FIFO blocks until a writer comes), reads stop at a byte cap, every real
directory is listed once however many symlinks lead to it, and file names
that are not UTF-8 are kept as an escaped text (``escape_name``) that HDF5
columns, JSON and terminals all take.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from . import reasons
from .reasons import Rejected

DEFAULT_MAX_BYTES = 64 * 2**20   # bytes read per input file; a larger file is ``too_large``

_ESCAPE = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(?:(\\)|x([0-9a-f]{2})|u([0-9a-f]{4}))")


def _escape_char(m: re.Match) -> str:
    c = m.group()
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:            # a non-UTF-8 byte, as os.fsdecode's surrogateescape carries it
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x80:                          # a control character (newline, tab, ...)
        return f"\\x{o:02x}"
    return f"\\u{o:04x}"                  # any other lone surrogate (e.g. from a JSON manifest)


def escape_name(name: str) -> str:
    """A file name (or any id) as printable, valid UTF-8 text, losslessly.

    A byte that is not UTF-8 becomes ``\\xNN`` (its value), a control
    character ``\\xNN``, any other lone surrogate ``\\uNNNN``, a backslash
    ``\\\\``; everything else stays as it is, so ordinary names are unchanged.
    ``unescape_name`` gives the original back.
    """
    return _ESCAPE.sub(_escape_char, name)


def _unescape_char(m: re.Match) -> str:
    backslash, byte, code = m.groups()
    if backslash:
        return "\\"
    if byte:
        o = int(byte, 16)
        return chr(o) if o < 0x80 else chr(0xDC00 + o)
    return chr(int(code, 16))


def unescape_name(text: str) -> str:
    """The inverse of ``escape_name`` (``os.fsencode`` of it gives the original bytes)."""
    return _UNESCAPE.sub(_unescape_char, text)


def walk(root: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Every entry under ``root`` that is not a directory, and the directories that could not be listed.

    Hidden names (a leading dot) are left out. Symlinks to directories are
    followed, but each real directory (``st_dev``, ``st_ino``) is listed only
    once, and the real tree is walked before any link, so a symlink loop
    neither multiplies files nor hangs, and a file keeps the group of its real
    place where it has one inside ``root``. Entries are everything else:
    regular files, links to them, dangling links, FIFOs, devices, sockets,
    for ``read_capped`` to read or turn into a reason. Both lists are sorted.
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    entries: list[Path] = []
    unlisted: list[Path] = []
    real: list[Path] = [root]   # directories reached without a symlink (the last component)
    links: list[Path] = []      # symlinks to directories: followed once the real tree is done
    while real or links:
        d = real.pop() if real else links.pop(0)
        try:
            st = os.stat(d)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            with os.scandir(d) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError:
            unlisted.append(d)
            continue
        for e in items:
            if e.name.startswith("."):
                continue
            p = d / e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                entries.append(p)
            elif e.is_symlink():
                links.append(p)
            else:
                real.append(p)
    return sorted(entries), sorted(unlisted)


FOLDER, MISSING = "a folder", "not found"   # what ``not_regular`` says of a folder and of nothing at all


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, FOLDER), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is no regular file to read (MISSING, FOLDER, "a FIFO", ...), else None.

    Decided by ``stat`` alone, so a FIFO is never opened (the open would block)
    and a device never read (it need not end). The one check every command
    makes of a file argument before opening it; each says in its own words
    what it expected instead.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as exc:   # a link loop, a name too long, permission denied on a parent
        return f"unreadable ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else _kind(mode)


NOT_WRITABLE = "a folder you cannot write in"   # what ``writable_folder`` says of a folder without write access


def writable_folder(path: str | os.PathLike) -> tuple[Path, str | None]:
    """(the nearest of ``path`` and its parents that exists, what stops a folder being written there or None).

    What stops it: what ``not_regular`` says of that place when it is not a
    folder ("a file", "a FIFO", ...), NOT_WRITABLE when it is one without
    write access. None: ``path`` is a folder to write in, or can be made one.
    The one check of every output location; each command words it its own way.
    """
    for place in (Path(path), *Path(path).parents):
        kind = not_regular(place)
        if kind == MISSING and not os.path.islink(place):
            continue
        if kind != FOLDER:   # a link to nothing cannot be made a folder either
            return place, "a link to nothing" if kind == MISSING else kind or "a file"
        return place, None if os.access(place, os.W_OK | os.X_OK) else NOT_WRITABLE
    return Path(path), MISSING   # not even the working folder exists


def _rejected(exc: OSError) -> Rejected:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Rejected(reasons.MISSING_FILE, exc.strerror or str(exc))
    return Rejected(reasons.UNREADABLE, exc.strerror or str(exc))


def read_capped(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file, at most ``max_bytes``; else ``Rejected`` with the reason.

    ``missing_file`` (absent, dangling link), ``unreadable`` (permission
    denied, link loop, I/O error), ``not_a_file`` (FIFO, device, socket,
    directory: decided by ``stat`` and never opened), ``too_large`` (more than
    ``max_bytes``: at most ``max_bytes + 1`` bytes are read to tell).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _rejected(exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected(reasons.NOT_A_FILE, _kind(st.st_mode))
    if st.st_size > max_bytes:
        raise Rejected(reasons.TOO_LARGE, f"{st.st_size} bytes > {max_bytes}")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it still returns at once
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _rejected(exc) from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Rejected(reasons.NOT_A_FILE, _kind(mode))
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise _rejected(exc) from None
    if len(data) > max_bytes:
        raise Rejected(reasons.TOO_LARGE, f"more than {max_bytes} bytes")
    return data
