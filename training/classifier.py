"""A loaded classifier: the model, its ``Preprocess`` contract, and the input rules it takes images by.

One home for what ``predict``, ``evaluate``, ``serve``, ``report``, ``ood``
and ``run`` share: the cheap checks done before loading (``check_model``),
loading a run folder or a .keras file with its contract (``load_classifier``),
the native-size input rules of the SPP head (``min_native_side``,
``cap_long_side``, ``native_input``), one file to model input
(``load_pixels``) and the batch predict call (``predict_probs``,
``predict_array``). Keras is imported only where a model is loaded or
inspected, so the checks stay fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from processing.cliutil import UsageError
from processing.decode import DEFAULT_MAX_PIXELS, decode_image
from processing.files import DEFAULT_MAX_BYTES, FOLDER, MISSING, escape_name, not_regular, read_capped
from processing.reasons import UNSUPPORTED_SIZE, Rejected

from .preprocess import Preprocess


def check_model(path: str | Path) -> tuple[Path, Preprocess]:
    """(the .keras file, its Preprocess contract) of a run folder or a .keras file, by the cheap checks alone.

    UsageError, one line, for a model path that is no regular file or a bad
    preprocess.json, before anything slow (the Keras import, the load).
    """
    if not str(path):
        raise UsageError("MODEL is an empty path: give a run folder or its model.keras")
    path = Path(path)
    model_path = path / "model.keras" if not_regular(path) == FOLDER else path
    kind = not_regular(model_path)
    if kind == MISSING:
        raise UsageError(f"model not found: {escape_name(str(model_path))} (train one with python -m training.run)")
    if kind:
        raise UsageError(f"model {escape_name(str(model_path))} is {kind}, not a .keras file: give a run folder "
                         f"or its model.keras")
    return model_path, Preprocess.load(model_path.parent)


def load_classifier(path: str | Path):
    """A run folder or a .keras file; returns (model, its Preprocess contract)."""
    model_path, pre = check_model(path)
    import keras

    from . import optim, spp  # noqa: F401  (register the SPP layer and the optimizers for loading)

    try:
        model = keras.saving.load_model(model_path)
    except Exception as exc:  # noqa: BLE001  (any failure to load is the same user error)
        raise UsageError(f"cannot load {model_path}: {type(exc).__name__}: {exc}") from None
    return model, pre


def predict_probs(model, batches) -> np.ndarray:
    """Meme probability for each image of an iterable of uint8 batches."""
    out = [np.asarray(model.predict_on_batch(x))[:, 1] for x in batches]
    return np.concatenate(out) if out else np.zeros(0)


def predict_array(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``predict_probs`` of an array of images, ``batch_size`` at a time."""
    return predict_probs(model, (x[i:i + batch_size] for i in range(0, len(x), batch_size)))


def _leaf_layers(layer):
    """The layers a model runs, in call order, with a model (or layer) of layers inside it opened up."""
    inner = getattr(layer, "layers", None)
    if not isinstance(inner, (list, tuple)):
        yield layer
        return
    for sub in inner:
        yield from _leaf_layers(sub)


def min_native_side(model) -> int:
    """The smallest height/width the model turns into a non-empty feature map.

    Walks the layers backwards, into nested models (a pretrained trunk): a
    "valid" window of size k and stride s needs ``(m - 1) * s + k`` pixels to
    give m outputs, a "same" one ``(m - 1) * s + 1``. Conv2D, DepthwiseConv2D,
    SeparableConv2D and the 2-D pooling layers count.
    """
    import keras

    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    need = 1
    for layer in reversed(list(_leaf_layers(model))):
        if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            window = layer.pool_size
        elif isinstance(layer, convs):
            window = layer.kernel_size
        else:
            continue
        stride = max(layer.strides)
        need = (need - 1) * stride + (max(window) if layer.padding == "valid" else 1)
    return need


def cap_long_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def native_input(rgb: np.ndarray, max_side: int, min_side: int) -> np.ndarray:
    """A decoded image as the SPP model takes it at its own aspect: long side capped, ``Rejected`` if too thin.

    Thinner than ``min_side`` (``min_native_side``) the last feature map would
    be empty and the pooled features undefined (the model answers NaN).
    """
    rgb = cap_long_side(rgb, max_side)
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise Rejected(UNSUPPORTED_SIZE, f"{w}x{h}: the model needs at least {min_side} pixels a side")
    return rgb


def load_pixels(path: Path, pre: Preprocess, native: bool, max_side: int, min_side: int = 1,
                max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The model input for one file; ``Rejected`` with the reason for a file it cannot become."""
    rgb = decode_image(read_capped(path, max_bytes), max_pixels=max_pixels).rgb
    return native_input(rgb, max_side, min_side) if native else pre.apply(rgb)
