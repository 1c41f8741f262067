"""The preprocessing contract a model was trained with, saved beside it.

``training.run`` writes it, and ``evaluate``, ``predict`` and the service read
it back, so an image is prepared for a model exactly as its training images
were. It needs no Keras, so commands can read it before the slow import.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from processing.cliutil import UsageError, atomic_write_json
from processing.files import MISSING, escape_name, not_regular, read_capped
from processing.reasons import Rejected
from processing.schema import DEFAULT_THRESHOLD, INPUT_SIZE, LABEL_NAMES, predicted_label
from processing.transform import DEFAULT_FIT, DEPRECATED_NAMES, FITS, canonical_fit, fit_image

from . import ARCHS, DEPRECATED_ARCHS

FILENAME = "preprocess.json"
MIN_SIZE, MAX_SIZE = 16, 1024    # model input sides training accepts (training.run --sizes) and a model may declare
MAX_BYTES = 2**20                # a preprocess.json is a few lines; anything past this is not one


class PreprocessError(UsageError):
    """A preprocess.json that cannot be used; one line naming the file and the field."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value) -> str:
    """A field's value for an error line: its JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


def problem(data: dict) -> str | None:
    """What is wrong with the fields of a loaded preprocess.json (absent fields take the defaults), or None."""
    size, fit = data.get("size", INPUT_SIZE), data.get("fit", DEFAULT_FIT)
    threshold, arch = data.get("threshold", DEFAULT_THRESHOLD), data.get("arch", "memenet")
    if not (isinstance(size, int) and not isinstance(size, bool) and MIN_SIZE <= size <= MAX_SIZE):
        return f"size must be a whole number from {MIN_SIZE} to {MAX_SIZE}, got {_shown(size)}"
    if not (isinstance(fit, str) and canonical_fit(fit) in FITS):
        return f"fit must be one of {', '.join([*FITS, *DEPRECATED_NAMES])}, got {_shown(fit)}"
    if not (_is_number(threshold) and math.isfinite(threshold) and 0 <= threshold <= 1):
        return f"threshold must be a number from 0 to 1, got {_shown(threshold)}"
    if not (isinstance(arch, str) and arch in (*ARCHS, *DEPRECATED_ARCHS)):
        return f"arch must be one of {', '.join([*ARCHS, *DEPRECATED_ARCHS])}, got {_shown(arch)}"
    if "label_names" in data and data["label_names"] != list(LABEL_NAMES):
        return f"label_names must be {json.dumps(LABEL_NAMES)}, got {_shown(data['label_names'])}"
    return None


@dataclass(frozen=True)
class Preprocess:
    fit: str = DEFAULT_FIT               # processing.transform.FITS
    size: int = INPUT_SIZE               # side of the square the model was trained on
    threshold: float = DEFAULT_THRESHOLD  # meme probability at or above which the answer is "meme"
    arch: str = "memenet"

    def __post_init__(self):
        object.__setattr__(self, "fit", canonical_fit(self.fit))

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Decoded RGB of any size to the model's square uint8 input."""
        return fit_image(rgb, self.fit, self.size)

    def label(self, probability: float) -> str:
        return predicted_label(probability, self.threshold)

    def with_threshold(self, threshold: float | None) -> "Preprocess":
        return self if threshold is None else replace(self, threshold=float(threshold))

    def to_dict(self) -> dict:
        return {**asdict(self), "label_names": list(LABEL_NAMES)}

    def save(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / FILENAME, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> "Preprocess":
        """The contract saved in ``folder``; the defaults for a model saved without one.

        PreprocessError (a UsageError: one line, exit 2) for a file that is
        not a regular file holding a JSON object with usable fields.
        """
        path = Path(folder) / FILENAME
        kind = not_regular(path)
        if kind == MISSING:
            return cls()
        fix = f"retrain or fix {escape_name(str(path))}"
        if kind:
            raise PreprocessError(f"{fix}: it is {kind}, not a JSON file")
        try:
            data = json.loads(read_capped(path, MAX_BYTES))
        except Rejected as exc:
            raise PreprocessError(f"{fix}: {exc}") from None
        except (ValueError, RecursionError) as exc:   # not JSON, not text, nested past the parser
            raise PreprocessError(f"{fix}: not JSON ({type(exc).__name__}: {exc})".splitlines()[0]) from None
        if not isinstance(data, dict):
            raise PreprocessError(f"{fix}: it must hold a JSON object, got {type(data).__name__}")
        wrong = problem(data)
        if wrong:
            raise PreprocessError(f"{fix}: {wrong}")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
