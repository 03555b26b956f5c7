"""Sparse convolution from spconv's neighbour tables in plain torch (CPU and any device).

spconv 2.3.x's CPU kernels race with more than one thread (silently wrong rows), assert in
every backward and refuse a bias in eval mode (``docs/dependencies.md`` section 3.2).
:func:`native_sparse_conv` computes the same convolution with one gather, one GEMM per kernel
offset and one ``index_add`` scatter, which is correct with any number of threads and is
differentiated by autograd. :mod:`projects.img2lidar.compat` routes spconv's CPU calls here;
``tests/test_compat.py`` checks it against a dense ``conv3d``.
"""
from typing import Optional

import torch


def native_sparse_conv(features: torch.Tensor,
                       weight: torch.Tensor,
                       indice_pairs: torch.Tensor,
                       indice_pair_num: torch.Tensor,
                       num_out: int,
                       inverse: bool = False,
                       subm: bool = False,
                       bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sparse convolution from spconv's native neighbour tables, in plain torch.

    Args:
        features (Tensor): Input features, shape (N_in, C_in).
        weight (Tensor): spconv 2 weight in KRSC layout, shape (C_out, *kernel, C_in).
        indice_pairs (Tensor): Neighbour table, shape (2, K, P); row 0 holds input indices and
            row 1 output indices of the forward convolution (swapped for an inverse one).
        indice_pair_num (Tensor): Valid pairs per kernel offset, shape (K,).
        num_out (int): Number of output sites.
        inverse (bool): Whether this is the inverse of the convolution that built the table.
        subm (bool): Submanifold convolution (output sites equal input sites).
        bias (Tensor, optional): Bias, shape (C_out,).

    Returns:
        Tensor: Output features, shape (num_out, C_out). Differentiable by autograd.
    """
    c_out = weight.shape[0]
    w = weight.reshape(c_out, -1, weight.shape[-1])  # (C_out, K, C_in)
    kv = w.shape[1]
    center = kv // 2
    counts = indice_pair_num.tolist()
    src_row, dst_row = (1, 0) if inverse else (0, 1)
    if subm:
        # spconv's submanifold tables skip the centre offset (identity pairs) and only count
        # the first half of the offsets; offset k > centre has as many pairs as its mirror.
        out = features @ w[:, center, :].t()
    else:
        out = features.new_zeros((num_out, c_out))
    offsets, srcs, dsts, sizes = [], [], [], []
    for k in range(kv):
        if subm and k == center:
            continue
        n = counts[kv - 1 - k] if subm and k > center else counts[k]
        if n <= 0:
            continue
        offsets.append(k)
        srcs.append(indice_pairs[src_row, k, :n])
        dsts.append(indice_pairs[dst_row, k, :n])
        sizes.append(n)
    if offsets:
        # one gather, one GEMM per kernel offset, one scatter: torch's CPU index_add is
        # correct with any number of threads (spconv's own CPU scatter races)
        gathered = features.index_select(0, torch.cat(srcs).long())
        contrib = torch.cat([
            g @ w[:, k, :].t() for g, k in zip(torch.split(gathered, sizes), offsets)
        ])
        out = out.index_add(0, torch.cat(dsts).long(), contrib)
    if bias is not None:
        out = out + bias
    return out
