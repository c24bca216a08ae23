"""Import the heavy modules a first training run would import, before any job runs.

A worker thread that imports torch's optimiser machinery (which pulls in torch._dynamo) holds the
import lock and the GIL for long stretches: the window froze for over a second at the start of the first
training. Importing them once at start-up keeps the event loop free during training.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)
_done = False


def warm_up_imports() -> float:
    """Import torch, its optimisers (and dynamo, imported lazily by them) and torchvision; seconds spent."""
    global _done
    if _done:
        return 0.0
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional  # noqa: F401
    import torchvision  # noqa: F401

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # triggers the lazy torch._dynamo import
    _done = True
    seconds = time.perf_counter() - t0
    log.debug("warm-up imports took %.2f s", seconds)
    return seconds
