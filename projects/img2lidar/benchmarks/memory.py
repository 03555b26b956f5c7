"""Peak memory for the benchmarks: of one step above its inputs (:class:`MemoryProbe`) and of a
stretch of steps (:class:`PeakMemory`), on CUDA from the allocator, on CPU from the resident
set.

On CPU the resident set shows freed tensors only if glibc returns them to the system: a
subcommand that measures CPU memory re-executes its process once with
``MALLOC_MMAP_THRESHOLD_=131072`` (:func:`reexec_with_mmap_threshold`), so that every large
tensor gets its own mmap and is unmapped when freed.
"""
import os
import sys

MMAP_ENV = 'MALLOC_MMAP_THRESHOLD_'


def reexec_with_mmap_threshold() -> None:
    """Re-execute this command line with ``MALLOC_MMAP_THRESHOLD_=131072`` unless it is set."""
    if MMAP_ENV not in os.environ:
        os.environ[MMAP_ENV] = '131072'
        os.execv(sys.executable, [sys.executable] + sys.argv)


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM), in KiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS; False if not permitted."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class MemoryProbe:
    """Peak extra memory of a step above what was allocated before it, on CUDA (allocator) or
    CPU (resident set).

    Args:
        device (torch.device): Where the step runs.
    """

    def __init__(self, device) -> None:
        import torch
        self.torch = torch
        self.device = device
        self.cuda = device.type == 'cuda'
        self.can_reset = self.cuda or reset_peak_rss()
        self.base = 0

    def header(self) -> str:
        if self.cuda:
            return 'peak MiB = torch.cuda.max_memory_allocated during the step - allocated before'
        if self.can_reset:
            return ('peak MiB = CPU resident-set growth: /proc/self/status VmHWM after the step '
                    '- VmRSS before (peak reset via /proc/self/clear_refs; '
                    f'{MMAP_ENV}={os.environ.get(MMAP_ENV, "unset")})')
        return ('peak MiB = CPU growth of the process-lifetime VmHWM (could not reset the peak: '
                'values only show growth beyond earlier peaks)')

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.reset_peak_memory_stats(self.device)
            self.base = self.torch.cuda.memory_allocated(self.device)
        elif self.can_reset:
            reset_peak_rss()
            self.base = proc_status_kib('VmRSS') * 1024
        else:
            self.base = proc_status_kib('VmHWM') * 1024

    def stop(self) -> float:
        """Peak extra bytes since :meth:`start`, in MiB."""
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
            peak = self.torch.cuda.max_memory_allocated(self.device)
        else:
            peak = proc_status_kib('VmHWM') * 1024
        return max(peak - self.base, 0) / 2**20


class PeakMemory:
    """Peak memory of a stretch of steps: CUDA allocations, or the CPU process's resident set.

    Args:
        device (torch.device): Where the steps run.
    """

    def __init__(self, device) -> None:
        self.cuda = device.type == 'cuda'
        self.method = ('torch.cuda.max_memory_allocated' if self.cuda else
                       'peak resident set size of this process (VmHWM, reset via '
                       '/proc/self/clear_refs)')

    def reset(self) -> None:
        import torch
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif not reset_peak_rss():
            self.method = ('peak resident set size of this process since its start '
                           '(ru_maxrss; /proc/self/clear_refs was not writable)')

    def read_gib(self) -> float:
        import torch
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        try:
            kib = proc_status_kib('VmHWM')
        except (OSError, KeyError):
            import resource
            kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / 2**20
