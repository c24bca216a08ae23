"""What a PatchCore model learns about its own normal scores, from the training images alone.

For a few training images, each patch's distance to the memory bank is taken *leaving that image out* (bank
rows that came from the same image, or from its rotated / flipped copies, do not count): the distance a
normal patch of an unseen image would get. Two statistics come from those distances:

- a **border profile**: the mean distance of each ring of cells (0 = the outermost ring) over the median
  cell of the interior. A CNN sees less context at the image edge, so edge patches are farther from the bank even in
  normal images; dividing the rings that are hotter than the interior by this ratio removes the false alarms
  along every edge without hiding an edge defect (it must still stand out from the normal edge);
- a **score scale**: the largest image score of those left-out normal images. Scores and maps are divided by
  it, so 1.0 means "as anomalous as the most unusual normal training image" for every model and data set,
  and one threshold (a little above 1) fits them all.
"""
from __future__ import annotations

import torch

#: training images used for the statistics at most (cost: images x cells x bank size multiply-adds)
MAX_IMAGES = 16
#: the border profile covers the outer `1 / BORDER_FRACTION` of the grid on each side
BORDER_FRACTION = 4


@torch.no_grad()
def leave_image_out_distances(queries: torch.Tensor, query_image: torch.Tensor, bank: torch.Tensor,
                              bank_image: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """(Q,) Euclidean distance of each query row to its nearest bank row from a different image
    (inf when the bank holds no other image)."""
    bank = bank.float()
    bank_sq = (bank**2).sum(1)
    out = torch.empty(queries.shape[0], device=queries.device)
    for s in range(0, queries.shape[0], chunk):
        q = queries[s:s + chunk].float()
        d = (q**2).sum(1, keepdim=True) + bank_sq.unsqueeze(0) - 2.0 * q @ bank.t()
        d.masked_fill_(query_image[s:s + chunk].unsqueeze(1) == bank_image.unsqueeze(0), float("inf"))
        out[s:s + chunk] = d.min(1).values.clamp_min(0).sqrt()
    return out


def ring_index(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h, w) long: each cell's distance in cells to the nearest image edge."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    return torch.minimum(torch.minimum(ys, h - 1 - ys).unsqueeze(1), torch.minimum(xs, w - 1 - xs).unsqueeze(0))


def border_weight(dist_maps: torch.Tensor) -> torch.Tensor:
    """(h, w) divisor >= 1 from left-out normal distance maps (n, h, w): per ring of the outer quarter, its
    mean over the interior's median cell when larger than 1; 1 elsewhere."""
    n, h, w = dist_maps.shape
    rings = ring_index(h, w, dist_maps.device)
    depth = max(1, min(h, w) // BORDER_FRACTION)
    mean = dist_maps.mean(0)
    interior = mean[rings >= depth]
    if interior.numel() == 0:
        return torch.ones(h, w, device=dist_maps.device)
    base = interior.median().clamp_min(1e-12)  # the median cell: the background when an object fills the middle
    weight = torch.ones(h, w, device=dist_maps.device)
    for r in range(depth):
        sel = rings == r
        weight[sel] = (mean[sel].mean() / base).clamp_min(1.0)
    return weight
