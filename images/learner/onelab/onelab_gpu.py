"""A shared GPU's memory cap, applied when a kernel starts (the image's IPython kernel config
runs :func:`apply`). The hub gives a learner on a shared GPU ``ONELAB_GPU_MEMORY_FRACTION``
(hub/gpu/claims.py); PyTorch then refuses an allocation past that share of the device, with
its own "CUDA out of memory" error, instead of taking memory the other learners were given.
Without the variable (CPU, or a whole GPU) nothing is imported: a kernel starts as fast as
before."""

import os


def fraction(environ=os.environ):
    """The cap from the environment, or None (unset, not a number, or outside (0, 1])."""
    try:
        value = float(environ.get("ONELAB_GPU_MEMORY_FRACTION") or "")
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


def apply(environ=os.environ):
    """Cap every visible CUDA device at the learner's share; the fraction applied, or None."""
    share = fraction(environ)
    if share is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    for device in range(torch.cuda.device_count()):
        torch.cuda.set_per_process_memory_fraction(share, device)
    return share
