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

from anomaly_gui.engines.border import border_weight, ring_index  # noqa: F401  (re-exported)

#: training images used for the statistics at most (cost: images x cells x bank size multiply-adds)
MAX_IMAGES = 8


@torch.no_grad()
def leave_image_out_distances(queries: torch.Tensor, query_image: torch.Tensor, bank: torch.Tensor,
                              bank_image: torch.Tensor, block_elements: int = 1 << 24) -> torch.Tensor:
    """(Q,) Euclidean distance of each query row to its nearest bank row from a different image
    (inf when the bank holds no other image). Query chunks of at most `block_elements` distances."""
    chunk = max(16, block_elements // max(1, bank.shape[0]))
    bank = bank.float()
    bank_sq = (bank**2).sum(1)
    out = torch.empty(queries.shape[0], device=queries.device)
    for s in range(0, queries.shape[0], chunk):
        q = queries[s:s + chunk].float()
        d = (q**2).sum(1, keepdim=True) + bank_sq.unsqueeze(0) - 2.0 * q @ bank.t()
        d.masked_fill_(query_image[s:s + chunk].unsqueeze(1) == bank_image.unsqueeze(0), float("inf"))
        out[s:s + chunk] = d.min(1).values.clamp_min(0).sqrt()
    return out
