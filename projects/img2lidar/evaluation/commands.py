"""The command lines of one evaluation job: the repository's own launch tools, as a user types
them (tools/train.py and tools/test.py; tools/dist_*.sh with torch.distributed; tools/slurm_*.sh
through srun)."""
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .protocol import REPO_ROOT

LAUNCHERS = ('none', 'pytorch', 'slurm')
TOOLS = REPO_ROOT / 'tools'


@dataclass(frozen=True)
class Launcher:
    """How jobs are started.

    Attributes:
        kind (str): 'none' (one local process), 'pytorch' (tools/dist_*.sh) or 'slurm'
            (tools/slurm_*.sh).
        processes (int): Processes (GPUs) per job; 1 for 'none'.
        partition (str, optional): The Slurm partition ('slurm' only).
        python (str): The interpreter of the tools. Defaults to this one.
    """
    kind: str = 'none'
    processes: int = 1
    partition: Optional[str] = None
    python: str = sys.executable

    def __post_init__(self) -> None:
        if self.kind not in LAUNCHERS:
            raise ValueError(f'launcher {self.kind!r} is not one of {LAUNCHERS}')
        if self.processes < 1 or (self.kind == 'none' and self.processes != 1):
            raise ValueError(f'launcher {self.kind!r} cannot run {self.processes} processes '
                             '(use --launcher pytorch or slurm for more than one)')
        if self.kind == 'slurm' and not self.partition:
            raise ValueError('the slurm launcher needs a partition')


@dataclass(frozen=True)
class Command:
    """A command line and the environment variables it adds."""
    argv: List[str]
    env: Dict[str, str] = field(default_factory=dict)

    def environment(self) -> Dict[str, str]:
        """dict: This process's environment with the command's variables (unbuffered Python,
        so that the output arrives as it is written)."""
        return dict(os.environ, PYTHONUNBUFFERED='1', **self.env)


def _launch_env(launcher: Launcher) -> Dict[str, str]:
    env = {'PYTHON': os.environ.get('PYTHON', launcher.python)}
    if launcher.kind == 'slurm':
        env['GPUS'] = str(launcher.processes)
        env['GPUS_PER_NODE'] = os.environ.get('GPUS_PER_NODE', str(min(launcher.processes, 8)))
    return env


def _options(options: Sequence[str]) -> List[str]:
    return ['--cfg-options', *options] if options else []


def train_command(launcher: Launcher, config: str, work_dir: str, options: Sequence[str],
                  resume: bool = False, job_name: str = 'train') -> Command:
    """tools/train.py (or its distributed / Slurm wrapper) on ``config``.

    Args:
        launcher (Launcher): How to start it.
        config (str): The downstream config.
        work_dir (str): Its work directory.
        options (Sequence[str]): Its ``--cfg-options``.
        resume (bool): Resume from the work directory's newest checkpoint (``--resume``).
        job_name (str): The Slurm job name.

    Returns:
        Command: The command line.
    """
    args = ['--work-dir', work_dir] + (['--resume'] if resume else []) + _options(options)
    if launcher.kind == 'none':
        return Command([launcher.python, str(TOOLS / 'train.py'), config, *args])
    if launcher.kind == 'pytorch':
        return Command(['bash', str(TOOLS / 'dist_train.sh'), config, str(launcher.processes),
                        *args], _launch_env(launcher))
    return Command(['bash', str(TOOLS / 'slurm_train.sh'), launcher.partition, job_name, config,
                    work_dir, *args[2:]], _launch_env(launcher))


def test_command(launcher: Launcher, config: str, checkpoint: str, work_dir: str,
                 options: Sequence[str], job_name: str = 'test') -> Command:
    """tools/test.py (or its distributed / Slurm wrapper) of ``checkpoint`` on ``config``.

    Args:
        launcher (Launcher): How to start it.
        config (str): The downstream config.
        checkpoint (str): The checkpoint tested.
        work_dir (str): Its work directory.
        options (Sequence[str]): Its ``--cfg-options``.
        job_name (str): The Slurm job name.

    Returns:
        Command: The command line.
    """
    args = ['--work-dir', work_dir] + _options(options)
    if launcher.kind == 'none':
        return Command([launcher.python, str(TOOLS / 'test.py'), config, checkpoint, *args])
    if launcher.kind == 'pytorch':
        return Command(['bash', str(TOOLS / 'dist_test.sh'), config, checkpoint,
                        str(launcher.processes), *args], _launch_env(launcher))
    return Command(['bash', str(TOOLS / 'slurm_test.sh'), launcher.partition, job_name, config,
                    checkpoint, *args], _launch_env(launcher))
