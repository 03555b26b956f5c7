"""Timing for the benchmarks: every figure is the minimum and the median over repeats, and every
report names the command that made it.

- :class:`Times` holds the seconds of one measured thing over its repeats;
- :func:`repeat` and :func:`interleaved` measure callables (interleaved: one repeat of each in
  turn, so that a busy machine slows all of them alike);
- :class:`PartTimer` splits a run into exclusive parts by wrapping the methods it calls;
- :class:`Report` is the one report format: a markdown title, the command line
  (``python tools/benchmark.py <subcommand> ...``), the machine, then tables and notes;
- :func:`threads` fixes the threads of torch and OpenCV for a measurement.
"""
import contextlib
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence


class Times:
    """Seconds of one measured thing, one value per repeat.

    Args:
        values (Sequence[float]): Seconds per repeat (at least one).
    """

    def __init__(self, values: Sequence[float]) -> None:
        self.values = [float(v) for v in values]  # any sequence, numpy arrays included
        if not self.values:
            raise ValueError('no measurement: at least one repeat is needed')

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def scaled(self, factor: float) -> 'Times':
        """These times times ``factor`` (e.g. per sample: ``1 / samples``)."""
        return Times([v * factor for v in self.values])

    def ms(self, digits: int = 2) -> str:
        """``'min / median'`` in milliseconds."""
        return f'{self.min * 1e3:.{digits}f} / {self.median * 1e3:.{digits}f}'

    def rate(self, count: float, digits: int = 1) -> str:
        """``count`` per second at the minimum and at the median time: ``'best / median'``."""
        return f'{count / self.min:.{digits}f} / {count / self.median:.{digits}f}'

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f'Times(min={self.min:.6f} s, median={self.median:.6f} s, n={len(self)})'


def _clock(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Times:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return Times([_clock(fn) for _ in range(repeats)])


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int,
                warmup: int = 1, before_each: Optional[Callable[[int], None]] = None
                ) -> Dict[str, Times]:
    """Time several callables in turn, one repeat of each per round.

    Args:
        fns (dict): Name -> callable.
        repeats (int): Rounds.
        warmup (int): Untimed rounds first. Defaults to 1.
        before_each (Callable[[int], None], optional): Called with the round's index before
            every timed call (e.g. to seed the random generators alike). Defaults to None.

    Returns:
        dict: Name -> :class:`Times`.
    """
    values: Dict[str, List[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            if before_each is not None:
                before_each(i)
            seconds = _clock(fn)
            if i >= warmup:
                values[name].append(seconds)
    return {name: Times(v) for name, v in values.items()}


class PartTimer:
    """Exclusive wall time per part: a part entered inside another pauses the outer one.

    Parts are entered with :meth:`part` or by methods wrapped with :meth:`wrap` /
    :meth:`instrument`. With ``sync`` (e.g. ``torch.cuda.synchronize``) every boundary
    synchronises, so a part's time includes its device work; with ``record`` (e.g.
    ``torch.profiler.record_function``) every part is also a profiler range.

    Args:
        sync (Callable[[], None], optional): Called at every part boundary. Defaults to None.
        record (Callable[[str], ContextManager], optional): A context manager per part.
            Defaults to None.
    """

    def __init__(self, sync: Optional[Callable[[], None]] = None,
                 record: Optional[Callable] = None) -> None:
        self.sync = sync or (lambda: None)
        self.record = record
        self.times: Dict[str, float] = {}
        self.stack: List[list] = []  # [part, start, depth]
        self.enabled = True
        self._wrapped: List[tuple] = []

    def reset(self) -> None:
        self.times, self.stack = {}, []

    @contextlib.contextmanager
    def part(self, name: str):
        """Time the body as ``name`` (re-entering the running part only counts depth)."""
        if not self.enabled:
            yield
            return
        if self.stack and self.stack[-1][0] == name:
            self.stack[-1][2] += 1
            try:
                yield
            finally:
                self.stack[-1][2] -= 1
            return
        self.sync()
        now = time.perf_counter()
        if self.stack:
            outer = self.stack[-1]
            self.times[outer[0]] = self.times.get(outer[0], 0.0) + now - outer[1]
        self.stack.append([name, now, 0])
        try:
            with (self.record(name) if self.record else contextlib.nullcontext()):
                yield
        finally:
            self.sync()
            now = time.perf_counter()
            part, start, _ = self.stack.pop()
            self.times[part] = self.times.get(part, 0.0) + now - start
            if self.stack:
                self.stack[-1][1] = now

    def wrap(self, name: str, fn: Callable) -> Callable:
        """``fn`` timed as part ``name``."""

        def timed(*args, **kwargs):
            with self.part(name):
                return fn(*args, **kwargs)

        timed.__wrapped__ = fn
        return timed

    def instrument(self, obj, method: str, name: str) -> None:
        """Time ``obj.method`` as part ``name`` (an instance attribute over the class's
        method) until :meth:`undo`."""
        setattr(obj, method, self.wrap(name, getattr(obj, method)))
        self._wrapped.append((obj, method))

    def undo(self) -> None:
        """Remove every wrapper of :meth:`instrument` (the class's methods show again)."""
        for obj, method in reversed(self._wrapped):
            delattr(obj, method)
        self._wrapped = []


@contextlib.contextmanager
def threads(count: int = 1):
    """Run the block with torch and OpenCV on ``count`` threads in this process (0: OpenCV
    without its thread pool), restoring both after it."""
    import cv2
    import torch
    saved = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(max(count, 1))
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])


def machine() -> str:
    """This machine in one line: CPU, usable cores, load average, Python."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else '?'
    return (f'{platform.processor() or platform.machine()}, {cores} usable cores, '
            f'load average {load} (1, 5, 15 min), Python {platform.python_version()}')


class Report:
    """The report of one benchmark run, as markdown: title, command, machine, then sections.

    Args:
        subcommand (str): The subcommand of ``tools/benchmark.py``.
        argv (Sequence[str]): Its arguments (after the subcommand).
        title (str): What was measured.
    """

    def __init__(self, subcommand: str, argv: Sequence[str], title: str) -> None:
        self.command = 'python tools/benchmark.py ' + shlex.join([subcommand, *argv])
        self.title = title
        self.lines: List[str] = []

    def note(self, text: str) -> None:
        """A paragraph."""
        self.lines += [text, '']

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]],
              align: Optional[str] = None) -> None:
        """A markdown table; ``align``: one of 'l' / 'r' per column (default: the first left,
        the rest right)."""
        align = align or 'l' + 'r' * (len(header) - 1)
        self.lines.append('| ' + ' | '.join(str(h) for h in header) + ' |')
        self.lines.append('|' + '|'.join('---' if a == 'l' else '---:' for a in align) + '|')
        for row in rows:
            self.lines.append('| ' + ' | '.join(str(c) for c in row) + ' |')
        self.lines.append('')

    def render(self) -> str:
        head = [f'# {self.title}', '', f'Command: `{self.command}`', '',
                f'Machine: {machine()}.', '']
        return '\n'.join(head + self.lines).rstrip() + '\n'

    def emit(self, out: Optional[str] = None) -> str:
        """Print the report and, with ``out``, write it there; returns the text."""
        text = self.render()
        sys.stdout.write(text)
        sys.stdout.flush()
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, 'w') as f:
                f.write(text)
        return text


def progress(text: str) -> None:
    """A progress line on stderr (the report goes to stdout)."""
    print(text, file=sys.stderr, flush=True)
