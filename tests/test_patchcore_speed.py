"""PatchCore's CPU fast paths give the same answers as the plain torch ones: the one-matrix map smoothing,
faiss search, the ONNX Runtime embedder, the chunked coreset, threaded decoding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.core.formats.base import import_dataset
from anomaly_gui.engines.base import RunContext, get_engine
from anomaly_gui.engines.image_data import gaussian_blur, iter_batches, upsample_blur, upsample_map
from anomaly_gui.engines.patchcore.model import chunked_coreset, greedy_coreset, knn, nearest
from tests.conftest import shared_dataset

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("offline_mobilenet")


@pytest.mark.parametrize("h,w,H,W,sigma", [(32, 32, 256, 256, 4.0), (28, 40, 224, 320, 2.0), (4, 4, 16, 16, 4.0),
                                           (8, 8, 64, 64, 0.0)])
def test_upsample_blur_equals_upsample_then_gaussian(h, w, H, W, sigma):
    m = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    ref = gaussian_blur(upsample_map(m[:, None], (H, W)), sigma)[:, 0]
    got = upsample_blur(m, (H, W), sigma)
    assert got.shape == (3, H, W)
    assert torch.allclose(got, ref, atol=1e-5)


def test_faiss_index_finds_the_brute_force_neighbours():
    pytest.importorskip("faiss")
    from anomaly_gui.engines.patchcore.knn import BankIndex

    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(300, 32, generator=g), torch.randn(2000, 32, generator=g)
    full = torch.cdist(q.double(), bank.double())
    d2, i = BankIndex(bank).search(q, 1)
    assert torch.equal(i[:, 0], full.argmin(1))
    assert torch.allclose(d2[:, 0].double().sqrt(), full.min(1).values, atol=1e-3)
    assert torch.equal(BankIndex(bank).search(q[:4], 5)[1], knn(q[:4], bank, 5))
    d_t, i_t = nearest(q, bank)
    assert torch.equal(i_t, i[:, 0])
    with pytest.raises(ValueError, match="unknown nearest-neighbour index"):
        BankIndex(bank, "ivf")


def test_hnsw_index_recall_is_high_on_a_small_bank():
    pytest.importorskip("faiss")
    from anomaly_gui.engines.patchcore.knn import BankIndex

    g = torch.Generator().manual_seed(2)
    q, bank = torch.randn(500, 16, generator=g), torch.randn(3000, 16, generator=g)
    exact = BankIndex(bank).search(q, 1)[1][:, 0]
    approx = BankIndex(bank, "hnsw").search(q, 1)[1][:, 0]
    assert (exact == approx).float().mean() > 0.9


def test_chunked_coreset_is_exact_below_the_chunk_size_and_covers_better_than_random():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(40, 8, generator=g) * 6
    x = centres[torch.randint(40, (4000,), generator=g)] + torch.randn(4000, 8, generator=g) * 0.3
    assert torch.equal(chunked_coreset(x, 50, None, seed=0, chunk_size=10_000), greedy_coreset(x, 50, None, seed=0))
    steps = []
    idx = chunked_coreset(x, 200, None, seed=0, chunk_size=1000, progress=lambda d, t: steps.append((d, t)))
    assert len(idx) == 200 and len(set(idx.tolist())) == 200
    assert steps[-1] == (4, 4)

    def radius(sel: torch.Tensor) -> float:
        return float(torch.cdist(x, x[sel]).min(1).values.max())

    rand = torch.randperm(4000, generator=g)[:200]
    assert radius(idx) < radius(rand)  # every one of the 40 clusters is covered
    assert radius(idx) < 1.6 * radius(greedy_coreset(x, 200, None, seed=0))


def test_threaded_decoding_keeps_order_and_reports_a_corrupt_file(tmp_path):
    import cv2

    paths = []
    for k in range(7):
        p = tmp_path / f"{k}.png"
        cv2.imwrite(str(p), np.full((20, 30, 3), k * 30, np.uint8))
        paths.append(str(p))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths.insert(3, str(tmp_path / "bad.png"))
    batches = list(iter_batches(paths, 16, 3, 3, torch.device("cpu"), RunContext()))
    assert [b.images.shape[0] for b in batches] == [3, 3, 2]
    idx = [i for b in batches for i in b.indices]
    assert idx == list(range(8))
    errors = [e for b in batches for e in b.errors]
    assert "bad.png" in errors[3] and not any(errors[:3] + errors[4:])
    means = [round(float(b.images[j].mean()) * 255) for b in batches for j in range(len(b.indices))]
    assert means[:3] == [0, 30, 60] and means[4:] == [90, 120, 150, 180]


def test_onnxruntime_and_faiss_give_the_torch_scores_on_real_images():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("faiss")
    items = import_dataset(shared_dataset("mvtec_screw")).items
    train = [it for it in items if it.split == "train"][:4]
    test = [it for it in items if it.split == "test"][:4]
    out = {}
    for runtime in ("torch", "onnxruntime"):
        eng = get_engine("patchcore")(device="cpu", runtime=runtime, image_size=128, coreset_chunk=1000)
        eng.fit(train)
        out[runtime] = eng.score(test)
        assert eng.model.uses_onnxruntime() == (runtime == "onnxruntime")
    for a, b in zip(out["torch"], out["onnxruntime"]):
        assert a.score == pytest.approx(b.score, rel=1e-4)
        assert np.abs(a.map - b.map).max() < 1e-3


def test_reduced_jpeg_decoding_matches_full_decoding_and_keeps_orientation(tmp_path):
    from PIL import Image

    from anomaly_gui.engines.image_data import _read_jpeg_reduced, load_image

    yy, xx = np.mgrid[0:600, 0:800]
    rgb = np.stack([xx * 255 // 800, yy * 255 // 600, (xx + yy) % 256], -1).astype(np.uint8)
    p = tmp_path / "wide.jpg"
    Image.fromarray(rgb).save(p, quality=95)
    fast, size = load_image(p, 128)
    assert size == (800, 600) and fast.shape == (128, 128, 3)
    assert _read_jpeg_reduced(p, 128, 128)[0].shape[:2] == (150, 200)  # decoded at 1/4 scale
    ref = cv2_area(np.asarray(Image.open(p).convert("RGB")), 128)
    assert np.abs(fast.astype(int) - ref.astype(int)).mean() < 2.0
    # EXIF orientation 6 (rotate 90 clockwise): size and pixels as the full decoder gives them
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6
    q = tmp_path / "rotated.jpg"
    img.save(q, quality=95, exif=exif.tobytes())
    fast, size = load_image(q, (60, 80))
    assert size == (600, 800) and fast.shape == (80, 60, 3)
    from anomaly_gui.core.imageio import read_image

    full = read_image(q)
    assert full.shape[:2] == (800, 600)
    assert np.abs(fast.astype(int) - cv2_area(full, (60, 80)).astype(int)).mean() < 3.0
    assert _read_jpeg_reduced(q, 500, 500) is None  # not twice the target: full decoding


def cv2_area(arr, size):
    import cv2

    w, h = (size, size) if isinstance(size, int) else size
    return cv2.resize(arr, (w, h), interpolation=cv2.INTER_AREA)
