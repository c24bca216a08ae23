"""Sample data quality: a minimal patch-kNN detector (MobileNetV2 features) on sample_data/product.

Checks that the bundled defects are findable by a standard feature-based method, independent of
the app's engines: ImageNet MobileNetV2 (`../shared/weights/mobilenet_v2-b0353104.pth`, or
--weights) features at stride 8, 3x3 average pooled, nearest-neighbour distance to all training
patches; image score = max of the map. Prints one JSON object with image and pixel AUROC.

    python benchmarks/bench_sample_data.py [--device cpu|cuda] [--weights PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    args = parser.parse_args()
    if not args.weights.is_file():
        print(f"bench_sample_data: weights not found at {args.weights}", file=sys.stderr)
        return 2

    import cv2
    import torch
    import torchvision
    from sklearn.metrics import roc_auc_score

    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.imageio import read_image, to_rgb8
    from anomaly_gui.sample_data import ensure_sample_data

    device = torch.device("cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    result = import_dataset(ensure_sample_data() / "product")
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(args.weights, weights_only=True))
    features = net.features[:7].eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def embed(path: str) -> torch.Tensor:
        x = torch.from_numpy(to_rgb8(read_image(path)).copy()).permute(2, 0, 1)[None].float().to(device) / 255
        with torch.no_grad():
            return torch.nn.functional.avg_pool2d(features((x - mean) / std), 3, 1, 1)[0]

    train = [it for it in result.items if it.split == "train"]
    test = [it for it in result.items if it.split == "test"]
    bank = torch.cat([embed(it.path).flatten(1).T for it in train])
    y_img, s_img, y_pix, s_pix = [], [], [], []
    for it in test:
        q = embed(it.path)
        h, w = q.shape[1:]
        dist = torch.cdist(q.flatten(1).T, bank).min(1).values.view(h, w).cpu().numpy()
        y_img.append(int(bool(it.is_anomalous)))
        s_img.append(float(dist.max()))
        big = cv2.resize(dist, (it.width or 256, it.height or 256), interpolation=cv2.INTER_LINEAR)
        gt = read_image(it.mask_path) > 0 if it.mask_path else np.zeros(big.shape, bool)
        y_pix.append(gt.ravel())
        s_pix.append(big.ravel())
    out = {"dataset": "sample_data/product", "n_train": len(train), "n_test": len(test), "device": str(device),
           "image_auroc": round(float(roc_auc_score(y_img, s_img)), 4),
           "pixel_auroc": round(float(roc_auc_score(np.concatenate(y_pix), np.concatenate(s_pix))), 4),
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
