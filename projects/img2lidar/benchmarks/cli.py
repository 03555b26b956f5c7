"""The command line of ``tools/benchmark.py``: one subcommand per benchmark module.

Every subcommand module has a docstring (its first paragraph: the report's title; the rest:
its description and example commands), ``add_arguments(parser)`` and ``run(args, report)``, which
fills a :class:`~projects.img2lidar.benchmarks.timing.Report`; the command line adds
``--out FILE`` (the report, as markdown) to each. Only the chosen subcommand's module is
imported.
"""
import argparse
import importlib
import sys
from typing import List, Optional

#: subcommand -> its module in this package, or None for those that tools/benchmark.py
#: runs from tools/benchmark_step.py
SUBCOMMANDS = {
    'pipeline': 'pipeline',
    'loader': 'loader',
    'pretraining': 'pretraining',
    'step': None,
    'gather': None,
    'losses': 'losses',
    'teachers': 'teachers',
    'superpixels': 'superpixels',
    'reading': 'reading',
}
#: the one-line help of each subcommand (the modules' docstrings say more)
SUMMARIES = {
    'pipeline': 'the per-sample pipeline against decoding its images at the same scale, '
                'with a profile of its parts',
    'loader': "the config's train dataloader (workers, collate, pinning): samples/s by "
              'number of workers',
    'pretraining': "the config's training step: samples/s, peak memory, time of each part",
    'step': 'memory and host time of the step at the published sizes '
            '(tools/benchmark_step.py: memory, host, coverage, pooling)',
    'gather': 'bytes sent per step and rank by the feature gather, in a 2-process gloo run '
              '(tools/benchmark_step.py gather)',
    'losses': 'time and peak memory of each loss head (forward + backward)',
    'teachers': 'forward time and peak memory per image of the frozen teachers',
    'superpixels': 'SLIC speed and agreement by downscale, and tools/create_superpixels.py '
                   'throughput by workers',
    'reading': "reading superpixel maps: the loader's checked reader against np.load / "
               'cv2.imread',
}


def _parser() -> argparse.ArgumentParser:
    lines = '\n'.join(f'  {name:<12} {text}' for name, text in SUMMARIES.items())
    parser = argparse.ArgumentParser(
        prog='tools/benchmark.py', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='The project\'s benchmarks. Every report starts with the command that made '
        'it; every time is the minimum and the median over repeats.',
        epilog=f'subcommands:\n{lines}\n\n`tools/benchmark.py SUBCOMMAND --help` for each.')
    parser.add_argument('subcommand', choices=list(SUBCOMMANDS), metavar='SUBCOMMAND')
    parser.add_argument('args', nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def subcommand_parser(name: str, module) -> argparse.ArgumentParser:
    """The parser of one subcommand: its module's arguments and ``--out``."""
    doc = module.__doc__ or ''
    parser = argparse.ArgumentParser(
        prog=f'tools/benchmark.py {name}', description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.add_argument('--out', help='also write the report (markdown) to this file')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``tools/benchmark.py SUBCOMMAND [args]``.

    Args:
        argv (list[str], optional): The arguments; ``sys.argv[1:]`` when None. Subcommands
            that measure CPU memory re-execute the process with ``MALLOC_MMAP_THRESHOLD_`` set
            only when called from the command line (``argv`` None).

    Returns:
        int: The exit status.
    """
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _parser().parse_args(argv[:1] or ['--help'])
    if argv[0] in ('-h', '--help'):  # pragma: no cover - argparse exits above
        return 0
    name, rest = top.subcommand, argv[1:]
    if SUBCOMMANDS[name] is None:
        raise SystemExit(f"'{name}' runs from tools/benchmark_step.py: use "
                         f'tools/benchmark.py {name} ...')
    module = importlib.import_module(f'{__package__}.{SUBCOMMANDS[name]}')
    args = subcommand_parser(name, module).parse_args(rest)
    reexec = getattr(module, 'reexec_for_memory', None)
    if from_command_line and reexec is not None:
        reexec(args)
    from .timing import Report
    title = ' '.join((module.__doc__ or name).strip().split('\n\n')[0].split()).rstrip('.')
    report = Report(name, rest, title)
    status = module.run(args, report)
    report.emit(args.out)
    return status
