"""anomalib 2.7 PatchcoreModel on the same backbone, data and image size: the reference side of
`bench_patchcore_vs_anomalib.py`. Runs in an environment that has anomalib (`pip install anomalib==2.7.0`);
prints one JSON object. Not a `bench_*` script because it needs that other environment.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    arrs = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="MVTec-layout folder")
    ap.add_argument("--weights", type=Path, required=True, help="torchvision mobilenet_v2 ImageNet weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()

    import anomalib
    import torchvision
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    from sklearn.metrics import roc_auc_score

    dev = torch.device(args.device)
    backbone = torchvision.models.mobilenet_v2()
    backbone.load_state_dict(torch.load(args.weights, weights_only=True))
    model = PatchcoreModel(layers=["features.6", "features.13"], backbone=backbone, pre_trained=False).to(dev)

    train = sorted((args.data / "train" / "good").glob("*.png"))
    test = sorted(p for p in (args.data / "test").rglob("*.png"))
    labels = [0 if p.parent.name == "good" else 1 for p in test]
    xtr = load_images(train, args.image_size)
    xte = load_images(test, args.image_size)

    t0 = time.perf_counter()
    model.train()
    with torch.no_grad():
        for i in range(0, len(xtr), args.batch):
            model(xtr[i : i + args.batch].to(dev))
    t_feat = time.perf_counter() - t0
    t1 = time.perf_counter()
    import os, sys
    sys.stderr = open(os.devnull, "w")  # anomalib draws a tqdm bar per coreset step
    model.subsample_embedding(args.coreset)
    sys.stderr = sys.__stderr__
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_coreset = time.perf_counter() - t1
    model.eval()

    def score(batch: int) -> tuple[np.ndarray, float]:
        xs = xte.to(dev)
        out = []
        with torch.no_grad():
            model(xs[:1])  # warm-up
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for i in range(0, len(xs), batch):
                out.append(model(xs[i : i + batch]).pred_score.flatten().cpu())
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return torch.cat(out).numpy(), len(xs) / (time.perf_counter() - t)

    scores, ips_b1 = score(1)
    _, ips_batched = score(args.batch)
    print(json.dumps({
        "implementation": f"anomalib {anomalib.__version__} PatchcoreModel",
        "device": str(dev),
        "n_train": len(train), "n_test": len(test),
        "memory_bank": list(model.memory_bank.shape),
        "fit_seconds": round(t_feat + t_coreset, 3),
        "coreset_seconds": round(t_coreset, 3),
        "image_auroc": round(float(roc_auc_score(labels, scores)), 4),
        "model_images_per_second_batch1": round(ips_b1, 2),
        f"model_images_per_second_batch{args.batch}": round(ips_batched, 2),
    }))


if __name__ == "__main__":
    main()
