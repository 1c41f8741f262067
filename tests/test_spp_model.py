"""The SPP layer against a NumPy reference, on both Keras backends; save/load; any input size."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.support.testkit import ROOT

keras = pytest.importorskip("keras")
from training.model import build_model  # noqa: E402
from training.spp import SpatialPyramidPooling  # noqa: E402


def spp_reference(x: np.ndarray, levels) -> np.ndarray:
    b, h, w, c = x.shape
    out = []
    for n in levels:
        cells = np.zeros((b, n, n, c), x.dtype)
        for i in range(n):
            r0, r1 = (i * h) // n, -(-((i + 1) * h) // n)
            for j in range(n):
                c0, c1 = (j * w) // n, -(-((j + 1) * w) // n)
                cells[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
        out.append(cells.reshape(b, -1))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 9), (7, 5), (13, 13), (16, 16), (2, 31)])
def test_matches_numpy_reference(h, w):
    x = np.random.default_rng(h * 100 + w).normal(size=(2, h, w, 3)).astype("float32")
    layer = SpatialPyramidPooling((1, 2, 4))
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == (2, 3 * 21)
    np.testing.assert_allclose(got, spp_reference(x, (1, 2, 4)), rtol=0, atol=0)


def test_output_shape_and_config():
    layer = SpatialPyramidPooling((1, 3))
    assert layer.compute_output_shape((None, None, None, 8)) == (None, 80)
    assert SpatialPyramidPooling.from_config(layer.get_config()).levels == (1, 3)
    with pytest.raises(ValueError):
        SpatialPyramidPooling((0,))


@pytest.mark.slow   # each architecture built, saved and loaded at several sizes
@pytest.mark.parametrize("arch", ["original", "memenet", "lite0"])
def test_models_take_any_size_and_round_trip(arch, tmp_path):
    model = build_model(arch)
    x = np.random.default_rng(0).integers(0, 256, (2, 77, 131, 3)).astype("uint8")
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2, 2) and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    assert model.predict_on_batch(x[:, :40, :33]).shape == (2, 2)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(x)), y, atol=1e-6)


def test_original_architecture_layer_for_layer_and_its_old_name():
    assert build_model("seed").name == "original"   # the deprecated name still builds it
    model = build_model("original")
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size[0], c.padding) for c in convs] == [
        (4, 8, "same"), (8, 7, "same"), (16, 6, "same"), (32, 5, "same"), (64, 4, "same")]
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in model.layers) == 4
    spp = [l for l in model.layers if isinstance(l, SpatialPyramidPooling)]
    assert spp[0].levels == (1, 2, 4) and model.layers[-1].units == 2


JAX_SCRIPT = """
import numpy as np, keras
assert keras.backend.backend() == "jax"
from training.spp import SpatialPyramidPooling
from training.model import build_model
x = np.load("x.npy")
np.save("spp.npy", keras.ops.convert_to_numpy(SpatialPyramidPooling((1, 2, 4))(x)))
m = keras.saving.load_model("m.keras")
np.save("pred.npy", np.asarray(m.predict_on_batch(np.load("img.npy"))))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_same_results_on_the_jax_backend(tmp_path):
    x = np.random.default_rng(5).normal(size=(2, 7, 5, 4)).astype("float32")
    img = np.random.default_rng(6).integers(0, 256, (1, 99, 70, 3)).astype("uint8")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "img.npy", img)
    model = build_model("memenet")
    model.save(tmp_path / "m.keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", JAX_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "spp.npy"), spp_reference(x, (1, 2, 4)), atol=0)
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), np.asarray(model.predict_on_batch(img)), atol=1e-4)
