"""Time and peak memory of each loss head (forward + backward) for several batch sizes M.

    python tools/benchmark.py losses                      # CPU, M = 1000 and 4000
    python tools/benchmark.py losses --sizes 4000 8000 --heads st_quantile+cb stslidr_reference
    python tools/benchmark.py losses --device cuda        # M = 1000, 4000 and 14400

Inputs are random: k and q are L2-normalised (M, D) leaves that require grad (D = 64), e is a
non-negative (M, E) teacher feature (E = 2048, like ResNet-50's post-ReLU stage 4) drawn
around 20 centres of unequal frequency (see :func:`make_inputs`), so that class-agnostic
balancing has votes to count. PPKT gets M point-pixel pairs and draws ``num_pairs = 4096`` of
them.

``stslidr_reference`` is ST-SLidR's own code path for ST + CB
(``loss_superpixel_stslidr_classbalance`` in TRAILab/ST-SLidR's
``pretrain/lightning_trainer.py``), re-expressed operation by operation with the same tensors
(two (M, M) similarity products, the row drop by ``index_select``, ``torch.quantile`` over
rows, the boolean and ``nonzero`` masking, unreduced cross-entropy, the vote clone and the
weighted dot product). The report ends with the speed and memory ratios of this project's
``st_quantile+cb`` against it, and checks that both give the same value.

Peak memory (:mod:`.memory`): on CUDA the allocator's peak during the step above the inputs;
on CPU the growth of the resident set during the step (the command line re-executes itself
with ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors leave the resident set).
"""
import sys
import time
from typing import Callable, Dict, Tuple

from .memory import MemoryProbe, reexec_with_mmap_threshold
from .timing import Report, Times, progress

HEAD_NAMES = ('slidr_infonce', 'slidr_infonce+cb', 'st_quantile', 'st_continuous',
              'st_quantile+cb', 'relational', 'ppkt', 'similarity', 'stslidr_reference')


def stslidr_reference(k, q, e, tau: float = 0.07, min_quantile: float = 0.01,
                      max_quantile: float = 1.0, threshold: float = 0.5):
    """ST-SLidR's class-balanced tolerant loss as its reference code computes it.

    The order and shape of every operation follow ``loss_superpixel_stslidr_classbalance``
    (and the helpers it calls), so that time and peak memory are those of that code path;
    the arithmetic is the one of ``SemanticallyTolerantLoss(tolerance='quantile',
    masked_negatives='zero_logit', balancing=ClassAgnosticBalancing(0.5))``.

    Args:
        k (Tensor): Pooled 3D features, (M, D).
        q (Tensor): Pooled 2D features, (M, D).
        e (Tensor): Pooled teacher features, (M, E).

    Returns:
        Tensor: The weighted loss.
    """
    import torch
    import torch.nn.functional as F
    feats = F.normalize(e, p=2, dim=1)
    cosine_sim = feats @ feats.t()  # the tolerant mask's similarity
    feats = F.normalize(e, p=2, dim=1)
    cosine_sim_balance = feats @ feats.t()  # the same product again, for the votes
    keep = torch.where(torch.sum(cosine_sim, dim=1) != 0.0)[0]
    cosine_sim = cosine_sim.index_select(0, keep).index_select(1, keep)
    cosine_sim_balance = cosine_sim_balance.index_select(0, keep).index_select(1, keep)
    k, q = k.index_select(0, keep), q.index_select(0, keep)
    logits = torch.mm(k, q.transpose(1, 0))
    target = torch.arange(logits.shape[0], device=logits.device)
    out = torch.div(logits, tau)
    weight = 1.0 - cosine_sim
    min_value = torch.quantile(weight, q=min_quantile, dim=1)
    max_value = torch.quantile(weight, q=max_quantile, dim=1)
    weight[weight < min_value.view(-1, 1)] = 0.0
    weight[weight > max_value.view(-1, 1)] = 0.0
    weight[torch.nonzero(weight, as_tuple=True)] = 1.0
    weight.fill_diagonal_(1.0)
    out = out * weight
    loss = F.cross_entropy(out.contiguous(), target, reduction='none')
    similarity = cosine_sim_balance.clone()
    similarity[similarity < threshold] = 0.0
    votes = similarity.sum(dim=1)
    votes = votes - votes.min()
    votes = votes / votes.max()
    anchor_weights = 1.0 - votes
    return torch.dot(loss, anchor_weights) / anchor_weights.sum()


def build_heads(chunk_size: int) -> Dict[str, Callable]:
    """The benchmarked configurations, by name."""
    from ..models.losses import (PPKTLoss, RelationalLoss, SemanticallyTolerantLoss,
                                 SimilarityLoss, SuperpixelInfoNCELoss)
    cb = dict(type='ClassAgnosticBalancing', threshold=0.5)
    return {
        'slidr_infonce': SuperpixelInfoNCELoss(chunk_size=chunk_size),
        'slidr_infonce+cb': SuperpixelInfoNCELoss(chunk_size=chunk_size, balancing=cb),
        'st_quantile': SemanticallyTolerantLoss(chunk_size=chunk_size, tolerance='quantile'),
        'st_continuous': SemanticallyTolerantLoss(chunk_size=chunk_size,
                                                  tolerance='continuous'),
        'st_quantile+cb': SemanticallyTolerantLoss(chunk_size=chunk_size, balancing=cb),
        'relational': RelationalLoss(chunk_size=chunk_size),
        'ppkt': PPKTLoss(chunk_size=chunk_size, seed=0),
        'similarity': SimilarityLoss(),
        'stslidr_reference': stslidr_reference,
    }


def make_inputs(m: int, d: int, e_dim: int, device, seed: int):
    """Unit k and q (M, D) that require grad, and teacher features e (M, E) >= 0 with the
    structure of a scene: 20 'classes' of very unequal frequency (road-like regions are
    frequent), each a noisy copy of its centre, so that teacher similarities within a class
    pass class-agnostic balancing's 0.5 threshold and votes differ between anchors."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    k = F.normalize(torch.randn(m, d, generator=g), dim=1).to(device).requires_grad_()
    q = F.normalize(torch.randn(m, d, generator=g), dim=1).to(device).requires_grad_()
    freq = 1.0 / torch.arange(1, 21, dtype=torch.float32)
    labels = torch.multinomial(freq, m, replacement=True, generator=g)
    centers = torch.randn(20, e_dim, generator=g)
    e = torch.relu(centers[labels] + 0.6 * torch.randn(m, e_dim, generator=g)).to(device)
    return k, q, e


def step(head, k, q, e, device) -> float:
    """One forward + backward; returns seconds."""
    import torch
    k.grad = None
    q.grad = None
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    loss = head(k, q, e)
    loss.backward()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise RuntimeError(f'non-finite loss {loss.item()}')
    return elapsed


def add_arguments(parser) -> None:
    parser.add_argument('--device', default='cpu', help="'cpu' (default) or 'cuda[:i]'")
    parser.add_argument('--sizes', type=int, nargs='+', default=None,
                        help='values of M (default: 1000 4000 on CPU, 1000 4000 14400 on CUDA)')
    parser.add_argument('--dim', type=int, default=64, help='feature size D (default 64)')
    parser.add_argument('--teacher-dim', type=int, default=2048,
                        help='teacher feature size E (default 2048)')
    parser.add_argument('--chunk-size', type=int, default=4096,
                        help='chunk_size of the chunked heads (default 4096)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps')
    parser.add_argument('--warmup', type=int, default=1, help='untimed steps before timing')
    parser.add_argument('--heads', nargs='+', default=None, choices=HEAD_NAMES,
                        help='subset of heads to run (default all)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)


def reexec_for_memory(args) -> None:
    """On CPU, freed tensors must leave the resident set (see :mod:`.memory`)."""
    if args.device.startswith('cpu'):
        reexec_with_mmap_threshold()


def benchmark(head, m: int, args, device, probe: MemoryProbe) -> Tuple[Times, float]:
    """Step times and peak extra memory (MiB) of ``head`` at size ``m``."""
    k, q, e = make_inputs(m, args.dim, args.teacher_dim, device, args.seed)
    for _ in range(args.warmup):
        step(head, k, q, e, device)
    times, peaks = [], []
    for _ in range(args.repeats):
        probe.start()
        times.append(step(head, k, q, e, device))
        peaks.append(probe.stop())
    del k, q, e
    return Times(times), max(peaks)


def run(args, report: Report) -> int:
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda requested but CUDA is not available')
    sizes = args.sizes or ([1000, 4000, 14400] if device.type == 'cuda' else [1000, 4000])
    progress('importing the loss heads ...')
    heads = build_heads(args.chunk_size)
    names = args.heads or list(HEAD_NAMES)
    probe = MemoryProbe(device)
    rows = []
    total = len(names) * len(sizes)
    for i, (m, name) in enumerate(((m, n) for m in sizes for n in names), 1):
        times, mib = benchmark(heads[name], m, args, device, probe)
        progress(f'[{i}/{total}] {name} M={m}: {times.ms(1)} ms, {mib:.1f} MiB')
        rows.append((name, m, times, mib))
    dev_name = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
                f'CPU, {torch.get_num_threads()} threads')
    report.note(f'Forward + backward on {args.device} ({dev_name}), D={args.dim}, '
                f'E={args.teacher_dim}, chunk_size={args.chunk_size}, {args.repeats} repeats '
                f'after {args.warmup} warm-up, torch {torch.__version__}. {probe.header()}. '
                'One M x M float32 matrix: ' +
                ', '.join(f'M={m}: {m * m * 4 / 2**20:.0f} MiB' for m in sizes) + '.')
    report.table(['head', 'M', 'time ms (min / median)', 'peak MiB'],
                 [(name, m, times.ms(1), f'{mib:.1f}') for name, m, times, mib in rows])
    by = {(name, m): (times, mib) for name, m, times, mib in rows}
    ours, ref = 'st_quantile+cb', 'stslidr_reference'
    compared = [m for m in sizes if (ours, m) in by and (ref, m) in by]
    if compared:
        lines = []
        for m in compared:
            (t_o, m_o), (t_r, m_r) = by[(ours, m)], by[(ref, m)]
            k, q, e = make_inputs(m, args.dim, args.teacher_dim, device, args.seed)
            with torch.no_grad():
                v_o, v_r = heads[ours](k, q, e).item(), heads[ref](k, q, e).item()
            lines.append((m, f'{t_r.median / t_o.median:.2f}x', f'{m_o / max(m_r, 1e-9):.2f}',
                          f'{abs(v_o - v_r) / abs(v_r):.1e}'))
        report.note(f'{ours} against ST-SLidR\'s code path ({ref}), same inputs (speed-up of '
                    'the medians):')
        report.table(['M', 'speed-up', 'peak memory ratio', '|value difference| / value'],
                     lines)
    return 0
