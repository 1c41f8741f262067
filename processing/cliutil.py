"""What every command shares: one-line errors with exit code 2, checked arguments, atomic writes, file digests."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input the user can fix; printed as one line, exit code 2."""


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def run_main(prog: str, main, argv=None) -> int:
    """Run ``main(argv)``, turning UsageError into one line and exit 2."""
    try:
        return main(argv) or 0
    except UsageError as exc:
        fail(prog, str(exc))


class ArgumentParser(argparse.ArgumentParser):
    """argparse as every command here uses it: no abbreviated options, and a bad command line is one line.

    argparse would print the whole usage block above its error; here it is
    ``prog: error: ... (see --help)`` and exit 2, like every other UsageError.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def _number(kind, text: str, accept, expected: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a count, a size, a batch)."""
    return _number(int, text, lambda v: v >= 1, "a whole number of at least 1")


def count(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    return _number(int, text, lambda v: v >= 0, "a whole number of at least 0")


def fraction(text: str) -> float:
    """argparse type: a probability or ratio from 0 to 1."""
    return _number(float, text, lambda v: 0 <= v <= 1, "a number from 0 to 1")


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0 (a learning rate)."""
    return _number(float, text, lambda v: v > 0, "a number above 0")


def distinct_list(item, example: str):
    """argparse type: comma-separated distinct values, each of argparse type ``item`` (``0,1``)."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(item(t) for t in text.split(","))
        except argparse.ArgumentTypeError:
            values = ()
        if not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected distinct values such as {example}, got {text!r}")
        return values
    return parse


def choice_list(choices):
    """argparse type: ``all``, or comma-separated distinct names from ``choices`` (``latin,ja``)."""
    def parse(text: str) -> tuple:
        if text == "all":
            return tuple(choices)
        values = tuple(text.split(","))
        if any(v not in choices for v in values) or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected 'all' or distinct names from {','.join(choices)}, "
                                             f"got {text!r}")
        return values
    return parse


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (hashlib.file_digest needs Python 3.11)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
