"""Which spconv build to install on a machine: the one place that knows the spconv pins.

spconv ships one PyPI package per build (``spconv`` for CPU, ``spconv-cu120``, ``spconv-cu126``
...), all providing the same ``spconv`` module, so exactly one may be installed. The design's
CUDA pin is ``spconv-cu120==2.3.6``, which has wheels for CPython 3.8-3.11 only; on newer
Pythons the newest CUDA 12 build with a wheel for the running Python is used instead
(``spconv-cu126==2.3.8``: CPython 3.10-3.13, manylinux_2_28). CUDA 12 builds run on CUDA 12
and 13 drivers (NVIDIA drivers are backward compatible with older CUDA runtimes).

Wheel tags measured on 2026-11-21 with ``pip install --dry-run --no-deps --only-binary=:all:
--python-version X.Y --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64``.

This file runs without the package (``tools/setup_env.sh`` calls it before anything is
installed)::

    python projects/img2lidar/spconv_build.py --cuda 1 --python 3.12   # -> spconv-cu126==2.3.8
"""
import argparse
import sys
from typing import List, Tuple

#: the CPU build
CPU_BUILD = 'spconv==2.3.8'
#: CUDA builds in order of preference (the design's pin first), with the CPython minor versions
#: that have wheels
CUDA_BUILDS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ('spconv-cu120==2.3.6', (8, 9, 10, 11)),
    ('spconv-cu126==2.3.8', (10, 11, 12, 13)),
)


def choose_spconv(python: Tuple[int, int], cuda: bool) -> str:
    """The spconv requirement to install.

    Args:
        python (tuple[int, int]): The running Python's (major, minor).
        cuda (bool): Whether the machine has a CUDA GPU (and a CUDA torch).

    Returns:
        str: A pip requirement, e.g. ``'spconv-cu120==2.3.6'``.

    Raises:
        ValueError: No CUDA build has a wheel for this Python.
    """
    if not cuda:
        return CPU_BUILD
    major, minor = python
    for requirement, minors in CUDA_BUILDS:
        if major == 3 and minor in minors:
            return requirement
    raise ValueError(f'no spconv CUDA build has a wheel for Python {major}.{minor}; builds: '
                     f'{[(r, [f"3.{m}" for m in ms]) for r, ms in CUDA_BUILDS]}')


def other_builds(requirement: str) -> List[str]:
    """The spconv package names to uninstall before installing ``requirement`` (never two
    builds at once)."""
    names = ['spconv'] + [r.split('==')[0] for r, _ in CUDA_BUILDS]
    return [n for n in names if n != requirement.split('==')[0]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Print the spconv build to install')
    parser.add_argument('--cuda', type=int, choices=(0, 1), required=True)
    parser.add_argument('--python', default=f'{sys.version_info[0]}.{sys.version_info[1]}',
                        help='X.Y (default: this interpreter)')
    parser.add_argument('--others', action='store_true',
                        help='print the other spconv packages (to uninstall) instead')
    args = parser.parse_args(argv)
    major, minor = (int(v) for v in args.python.split('.')[:2])
    requirement = choose_spconv((major, minor), bool(args.cuda))
    print(' '.join(other_builds(requirement)) if args.others else requirement)
    return 0


if __name__ == '__main__':
    sys.exit(main())
