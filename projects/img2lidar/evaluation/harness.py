"""The evaluation harness: every run of a protocol, for every seed, as an ordinary job of the
repository's tools in its own work folder ``<work-dir>/<protocol>/<run>/seed<k>``.

A method may be evaluated from several pretraining runs (its pretraining seeds): each
checkpoint p, with every evaluation seed k, is a job in ``<run>/pretrain<p>_seed<k>``, and the
statistics are over all (pretraining seed, evaluation seed) results. One checkpoint keeps the
``<run>/seed<k>`` layout.

One evaluation at a time works in ``<work-dir>/<protocol>``: :func:`evaluate` holds an
exclusive lock on it (:mod:`.work_lock`), and a second one fails at once, naming the holder.

Resume rule, per job (:func:`next_step`):

- ``metrics.json`` present: finished, kept as it is (never run again);
- training ended normally (``job.json`` says ``trained``): only its metrics are collected
  (tools/test.py runs where the mode needs it);
- a checkpoint present: ``tools/train.py --resume`` continues from the newest one (the
  resumption is counted in ``metrics.json`` as ``resumes``);
- otherwise (new, or interrupted before its first checkpoint): the folder is emptied and the
  job starts from scratch.

A folder holds one job: ``job.json`` records its config, mode, options, seed and checkpoint
(path and SHA-256 of its contents), and a folder recorded for another job (another checkpoint,
or the same path with new contents) is refused rather than reused. Every check that can fail
without running anything (configs, pinned hyper-parameters, input files, the checkpoint, each
folder's recorded job) is done before the first job starts.
"""
import hashlib
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from .commands import Command, Launcher, test_command, train_command
from .pinned import batch_options, check_pinned, config_value, resolved_config
from .protocol import Protocol, ProtocolError, ProtocolRun
from .results import Evaluation, RunResult, as_checkpoints
from .run_folder import RunFolder
from .run_logs import final_validation, last_seg_metrics, seg_metrics
from .work_lock import work_folder_lock

Log = Callable[[str], None]


class JobFailed(RuntimeError):
    """A tool exited with an error, or left no SegMetric result."""


def say(message: str) -> None:
    """The harness's own progress lines, marked ``[evaluate]``."""
    print(f'[evaluate] {message}', flush=True)


@dataclass(frozen=True)
class Job:
    """One protocol run with one seed, from one pretraining checkpoint.

    Attributes:
        protocol (str): The protocol's name.
        run (ProtocolRun): The run.
        seed (int): ``randomness.seed`` (the evaluation seed).
        checkpoint (str, optional): The evaluated pretraining checkpoint (None: random init).
        options (tuple[str, ...]): Every ``--cfg-options`` entry the tools get.
        folder (RunFolder): Its work folder.
        spec (dict): What it is (:func:`job_spec`).
        pretrain (int, optional): The checkpoint's index (pretraining seed) when several are
            evaluated; None for one.
    """
    protocol: str
    run: ProtocolRun
    seed: int
    checkpoint: Optional[str]
    options: Tuple[str, ...]
    folder: RunFolder
    spec: dict
    pretrain: Optional[int] = None

    @property
    def name(self) -> str:
        """str: ``<protocol>/<run>/<folder>`` (:func:`job_folder_name`)."""
        return f'{self.protocol}/{self.run.name}/{job_folder_name(self.pretrain, self.seed)}'


def job_folder_name(pretrain: Optional[int], seed: int) -> str:
    """``seed<k>`` for the one checkpoint of an evaluation, ``pretrain<p>_seed<k>`` for
    checkpoint p of several."""
    return f'seed{seed}' if pretrain is None else f'pretrain{pretrain}_seed{seed}'


def file_digest(path: Optional[str]) -> Optional[str]:
    """The SHA-256 of a file's contents (None for no file)."""
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def job_spec(run: ProtocolRun, seed: int, checkpoint: Optional[str],
             checkpoint_sha256: Optional[str], options: Sequence[str]) -> dict:
    """What a job is, as ``job.json`` records it: the checkpoint's path and contents, and
    ``options`` without the per-process batch, which depends on the number of processes (the
    total batch is recorded instead)."""
    return dict(config=run.config, mode=run.mode, checkpoint=checkpoint,
                checkpoint_sha256=checkpoint_sha256, seed=seed, options=list(options),
                batch=run.pinned.get('batch'))


def checkpoint_options(run: ProtocolRun, checkpoint: Optional[str]) -> List[str]:
    """The options that start a training run from ``checkpoint``, or from random weights.

    Raises:
        ProtocolError: For a test-only run without a checkpoint, or a training run with a
            checkpoint but no ``checkpoint_option``.
    """
    if not run.trains:
        if checkpoint is None:
            raise ProtocolError(f'run {run.name!r} tests the checkpoint itself: it needs one')
        return []  # the checkpoint is tools/test.py's argument
    if checkpoint is None:
        return list(run.random_init_options)
    if not run.checkpoint_option:
        raise ProtocolError(f'run {run.name!r} has no checkpoint_option to load a checkpoint')
    return [f'{run.checkpoint_option}={checkpoint}']


def check_inputs(run: ProtocolRun, cfg) -> None:
    """Refuse a run whose ``required_files`` (config keys) name files that do not exist.

    Raises:
        ProtocolError: Naming the key and the missing file.
    """
    for key in run.required_files:
        path = config_value(cfg, key, None)
        if not path or not osp.exists(path):
            raise ProtocolError(f'run {run.name!r} needs the file given by {key} '
                                f'({path!r} does not exist); pass it with --cfg-options {key}=PATH')


def checked_checkpoints(checkpoints) -> List[Tuple[Optional[str], Optional[str]]]:
    """The evaluated checkpoints as (absolute path, SHA-256), checked.

    Args:
        checkpoints (str | None | Sequence[str | None]): One checkpoint (None: random init) or
            several pretraining runs of one method.

    Raises:
        ProtocolError: A checkpoint that does not exist; random init among several; one
            checkpoint given twice (by path or by contents).
    """
    checkpoints = as_checkpoints(checkpoints)
    if not checkpoints:
        raise ProtocolError('no checkpoint to evaluate')
    if len(checkpoints) > 1 and None in checkpoints:
        raise ProtocolError('random init (none) has no pretraining seeds: evaluate it alone, '
                            'its evaluation seeds are --seeds')
    out = []
    for checkpoint in checkpoints:
        if checkpoint is not None and not osp.isfile(checkpoint):
            raise ProtocolError(f'checkpoint {checkpoint} does not exist')
        path = osp.abspath(checkpoint) if checkpoint else None
        out.append((path, file_digest(path)))
    for i, (path, digest) in enumerate(out):
        for j in range(i):
            if digest is not None and out[j][1] == digest:
                raise ProtocolError(f'{path} and {out[j][0]} are the same checkpoint (same '
                                    'contents): pretraining seeds must be different runs')
    return out


def plan(protocol: Protocol, checkpoints, seeds: Sequence[int], work_dir: str,
         launcher: Launcher, options: Sequence[str] = ()) -> List[Job]:
    """The jobs of an evaluation, each checked before any of them runs.

    Args:
        protocol (Protocol): The protocol.
        checkpoints (str | None | Sequence[str]): The pretraining checkpoint (None for random
            init), or several pretraining runs of one method (its pretraining seeds 0, 1, ...).
        seeds (Sequence[int]): The evaluation seeds of the training runs (test-only runs use
            the first).
        work_dir (str): ``<work-dir>``; the jobs go to ``<work-dir>/<protocol>/<run>/seed<k>``
            (one checkpoint) or ``.../<run>/pretrain<p>_seed<k>`` (several).
        launcher (Launcher): How jobs start (its number of processes shares the batch).
        options (Sequence[str]): More ``--cfg-options`` for every run (data roots, text
            embeddings ...); they may not change a pinned value.

    Returns:
        list[Job]: Run by run, checkpoint by checkpoint, seed by seed.

    Raises:
        ProtocolError: A pinned value, input file or checkpoint that does not fit.
        RunFolderConflict: A work folder that holds another job.
    """
    checked = checked_checkpoints(checkpoints)
    several = len(checked) > 1
    jobs = []
    for run in protocol.runs:
        batch = batch_options(run, launcher.processes)
        for pretrain, (checkpoint, digest) in enumerate(checked):
            base = [*run.cfg_options, *checkpoint_options(run, checkpoint), *options]
            if pretrain == 0:  # the options differ by the checkpoint's path only
                cfg = resolved_config(run.config, [*base, *batch])
                check_pinned(run, cfg)
                check_inputs(run, cfg)
            for seed in (seeds if run.trains else seeds[:1]):
                index = pretrain if several else None
                folder = RunFolder(osp.join(work_dir, protocol.name, run.name,
                                            job_folder_name(index, seed)))
                seed_option = [f'randomness.seed={seed}']
                spec = job_spec(run, seed, checkpoint, digest, [*base, *seed_option])
                folder.check_owned()
                folder.check_spec(spec)
                jobs.append(Job(protocol.name, run, seed, checkpoint,
                                (*base, *batch, *seed_option), folder, spec, index))
    return jobs


def next_step(job: Job) -> str:
    """What a job needs: 'done', 'collect' (training has ended: metrics only), 'resume' (from
    its newest checkpoint) or 'start' (from scratch, in an emptied folder)."""
    folder = job.folder
    if folder.finished():
        return 'done'
    if not job.run.trains:
        return 'collect'
    if folder.trained():
        return 'collect'
    if folder.state() is not None and folder.last_checkpoint():
        return 'resume'
    return 'start'


def execute(command: Command, log_file: str, echo: bool = True) -> None:
    """Run a command, appending its whole output to ``log_file`` (and echoing it).

    Raises:
        JobFailed: When it exits with an error.
    """
    with open(log_file, 'a') as log, subprocess.Popen(
            command.argv, env=command.environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True) as proc:
        try:
            for line in proc.stdout:
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        finally:
            if proc.poll() is None:  # interrupted: end the job with all its processes
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    if proc.returncode != 0:
        raise JobFailed(f'{osp.basename(command.argv[1])} exited with {proc.returncode}; its '
                        f'output: {log_file}')


def run_training(job: Job, launcher: Launcher, resume: bool, echo: bool = True) -> None:
    """tools/train.py for a job, resumed or from scratch, then record that it ended."""
    job.folder.start(job.spec, clean=not resume)
    execute(train_command(launcher, job.run.config, job.folder.path, job.options, resume=resume,
                          job_name=job.name.replace('/', '-')),
            job.folder.file('train.log'), echo)
    job.folder.mark_trained()


def tested_metrics(job: Job, launcher: Launcher, checkpoint: str, echo: bool = True) -> dict:
    """tools/test.py of ``checkpoint`` for a job, in its emptied ``test/`` folder.

    Returns:
        dict: The SegMetric result.
    """
    if osp.isdir(job.folder.test_dir):
        shutil.rmtree(job.folder.test_dir)
    execute(test_command(launcher, job.run.config, checkpoint, job.folder.test_dir, job.options,
                         job_name=job.name.replace('/', '-')),
            job.folder.file('test.log'), echo)
    metrics = last_seg_metrics(job.folder.test_dir)
    if metrics is None:
        raise JobFailed(f'tools/test.py left no SegMetric result in {job.folder.test_dir}')
    return metrics


def collect(job: Job, launcher: Launcher, echo: bool = True) -> None:
    """Write a job's final metrics: its last validation ('train' mode) or tools/test.py's."""
    folder = job.folder
    if not job.run.trains:
        folder.start(job.spec, clean=True)
    metrics, source = None, None
    if job.run.mode == 'train':
        metrics, source = final_validation(folder.path), 'validation after the last epoch'
    if metrics is None:
        checkpoint = folder.last_checkpoint() if job.run.trains else job.checkpoint
        if checkpoint is None:
            raise JobFailed(f'{folder.path} has no checkpoint to test')
        metrics = tested_metrics(job, launcher, checkpoint, echo)
        source = f'tools/test.py on {checkpoint}'
    state = folder.state() or {}
    folder.finish(dict(seed=job.seed, metrics=seg_metrics(metrics), source=source,
                       resumes=state.get('resumes', 0)))


def run_job(job: Job, launcher: Launcher, log: Log = say, echo: bool = True) -> str:
    """Bring one job to its final metrics.

    Returns:
        str: The step it took (see :func:`next_step`); 'done' when it had finished before.
    """
    step = next_step(job)
    if step == 'done':
        log(f'{job.name}: finished before, kept ({job.folder.path})')
        return step
    if step in ('start', 'resume'):
        what = (f'resuming from {osp.basename(job.folder.last_checkpoint())}' if step == 'resume'
                else 'training')
        log(f'{job.name}: {what} ({job.run.config})')
        run_training(job, launcher, resume=step == 'resume', echo=echo)
    collect(job, launcher, echo)
    log(f'{job.name}: mIoU {100 * job.folder.metrics()["metrics"]["miou"]:.2f}')
    return step


def evaluation_folder(work_dir: str, protocol: Protocol) -> str:
    """str: ``<work-dir>/<protocol>``: the jobs' folders, the report, the lock."""
    return osp.join(work_dir, protocol.name)


def evaluate(protocol: Protocol, checkpoints, seeds: Sequence[int], work_dir: str, label: str,
             launcher: Launcher = Launcher(), options: Sequence[str] = (), log: Log = say,
             echo: bool = True) -> Evaluation:
    """Run (or keep) every job of a protocol for one method and gather their results, holding
    the lock of ``<work-dir>/<protocol>`` throughout.

    Args:
        protocol (Protocol): The protocol.
        checkpoints (str | None | Sequence[str]): The pretraining checkpoint (None for random
            init), or several pretraining runs of the method (its pretraining seeds).
        seeds (Sequence[int]): The evaluation seeds.
        work_dir (str): ``<work-dir>`` (see :func:`plan`).
        label (str): The method's label in the results.
        launcher (Launcher): How jobs start.
        options (Sequence[str]): More ``--cfg-options`` for every run.
        log (callable): Where the harness's progress lines go.
        echo (bool): Echo the tools' output (it always goes to the folders' logs).

    Returns:
        Evaluation: The results, one per job.

    Raises:
        WorkFolderLocked: When another evaluation works in ``<work-dir>/<protocol>``.
    """
    with work_folder_lock(evaluation_folder(work_dir, protocol)):
        jobs = plan(protocol, checkpoints, seeds, work_dir, launcher, options)
        evaluation = Evaluation(protocol, label,
                                tuple(osp.abspath(c) if c else None
                                      for c in as_checkpoints(checkpoints)),
                                tuple(seeds), launcher, tuple(options))
        for job in jobs:
            evaluation.steps[job.name] = run_job(job, launcher, log, echo)
            evaluation.results.append(RunResult(label, job.run.title, job.seed,
                                                job.folder.metrics()['metrics'], job.pretrain))
    return evaluation


#: CHECKPOINT values that mean the random-initialisation baseline
RANDOM_INIT_VALUES = ('none', 'random')


def checkpoint_argument(value: str) -> Optional[str]:
    """A checkpoint from the command line: None (random init) for 'none' or 'random'."""
    return None if value.lower() in RANDOM_INIT_VALUES else value


def default_work_dir(label: str) -> str:
    """``work_dirs/evaluation/<label>``, the label made a folder name."""
    return osp.join('work_dirs', 'evaluation', re.sub(r'[^A-Za-z0-9._-]+', '_', label))
