"""Host values on the device without a blocking copy.

A blocking host-to-device copy (``torch.tensor(..., device='cuda')``, ``new_tensor``, ``.to``
without ``non_blocking``) makes the host wait until the device has finished everything queued
before it: inside the training step that is a synchronisation. :func:`host_to_device` stages
the values in pinned (page-locked) host memory and copies them with ``non_blocking=True``, so
the host goes on queueing work; torch's pinned-memory allocator keeps the staging buffer until
the copy has run.
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor


def host_to_device(values: Union[Tensor, np.ndarray, Sequence], device,
                   dtype: Optional[torch.dtype] = None) -> Tensor:
    """Host values (a CPU tensor, an array or Python numbers) on ``device``, copied without
    blocking the host.

    Args:
        values (Tensor | np.ndarray | Sequence): The values, on the host.
        device (torch.device | str): Where they go.
        dtype (torch.dtype, optional): Their dtype there; as ``torch.as_tensor`` infers it
            when None.

    Returns:
        Tensor: The values on ``device``. The host values must not be changed in place
        afterwards (the copy may still be queued).
    """
    host = torch.as_tensor(values, dtype=dtype)
    if host.device.type != 'cpu':
        raise ValueError(f'host_to_device takes host values, got a tensor on {host.device}')
    if torch.device(device).type == 'cuda' and not host.is_pinned():
        host = host.pin_memory()
    return host.to(device, non_blocking=True)
