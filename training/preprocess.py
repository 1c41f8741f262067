"""The preprocessing contract a model was trained with, saved beside it.

``training.run`` writes it, and ``evaluate``, ``predict`` and the service read
it back, so an image is prepared for a model exactly as its training images
were. It needs no Keras, so commands can read it before the slow import.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from processing.cliutil import atomic_write_json
from processing.schema import DEFAULT_THRESHOLD, INPUT_SIZE, LABEL_NAMES, predicted_label
from processing.transform import DEFAULT_FIT, canonical_fit, fit_image

FILENAME = "preprocess.json"


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
        """The contract saved in ``folder``; the defaults for a model saved without one."""
        path = Path(folder) / FILENAME
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
