"""The work folder of one evaluation job (one protocol run, one seed) and what it says about the
job: ``<work-dir>/<protocol>/<run>/seed<k>/``, or ``<work-dir>/<protocol>/<run>/
pretrain<p>_seed<k>/`` for pretraining seed p of a method evaluated from several pretraining
runs.

Files the harness writes there, besides the tools' own (checkpoints, mmengine's log folders):

- ``job.json``: what the job is (config, mode, options, seed, checkpoint and its SHA-256),
  written before it starts, ``trained`` once tools/train.py has ended normally, and how many
  times training was resumed;
- ``metrics.json``: its final SegMetric result, written last. Its presence is what makes the job
  finished: a finished job is never run again;
- ``train.log``, ``test.log``: the whole output of each tool, appended; ``test/``: the work
  directory of tools/test.py.
"""
import json
import os
import os.path as osp
import shutil
from typing import Optional

from .atomic_file import write_json_atomic

SPEC_FILE = 'job.json'
METRICS_FILE = 'metrics.json'
TEST_DIR = 'test'


class RunFolderConflict(RuntimeError):
    """A work folder holds another job than the one asked for."""


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON so that a reader never sees a partial file (a uniquely named
    temporary file in the same folder, then ``os.replace``)."""
    write_json_atomic(path, obj)


def read_json(path: str):
    """The JSON object in ``path``."""
    with open(path) as f:
        return json.load(f)


class RunFolder:
    """One job's work folder.

    Args:
        path (str): ``<work-dir>/<protocol>/<run>/[pretrain<p>_]seed<k>``.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def file(self, name: str) -> str:
        """str: A path inside the folder."""
        return osp.join(self.path, name)

    @property
    def test_dir(self) -> str:
        """str: The work directory of tools/test.py."""
        return self.file(TEST_DIR)

    def finished(self) -> bool:
        """bool: Whether the job has its final metrics."""
        return osp.isfile(self.file(METRICS_FILE))

    def metrics(self) -> dict:
        """dict: The final record: ``metrics`` (SegMetric's result), ``seed``, ``source``."""
        return read_json(self.file(METRICS_FILE))

    def state(self) -> Optional[dict]:
        """dict, optional: The contents of ``job.json``, None when the job never started."""
        path = self.file(SPEC_FILE)
        return read_json(path) if osp.isfile(path) else None

    def check_spec(self, spec: dict) -> None:
        """Refuse a folder that holds another job (another checkpoint, config, option ...).

        Raises:
            RunFolderConflict: Naming the fields that differ.
        """
        state = self.state()
        if state is None:
            return
        stored = state['spec']
        differ = sorted(k for k in set(stored) | set(spec) if stored.get(k) != spec.get(k))
        if differ:
            detail = '; '.join(f'{k}: {stored.get(k)!r} there, {spec.get(k)!r} now'
                               for k in differ)
            raise RunFolderConflict(
                f'{self.path} holds another job ({detail}). Evaluate into another --work-dir, '
                'or delete that folder to redo it.')

    def trained(self) -> bool:
        """bool: Whether tools/train.py has ended normally for this job."""
        state = self.state()
        return bool(state and state.get('trained'))

    def last_checkpoint(self) -> Optional[str]:
        """str, optional: The newest checkpoint mmengine saved here (its ``last_checkpoint``
        file names it), if it exists."""
        pointer = self.file('last_checkpoint')
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            path = self.file(osp.basename(f.read().strip()))
        return path if osp.isfile(path) else None

    def check_owned(self) -> None:
        """Refuse to work in a non-empty folder that the harness did not make.

        Raises:
            RunFolderConflict: When the folder has files but no ``job.json``.
        """
        if osp.isdir(self.path) and os.listdir(self.path) and self.state() is None:
            raise RunFolderConflict(f'{self.path} has files but no {SPEC_FILE}: it was not '
                                    'made by the evaluation harness; delete it or choose another '
                                    '--work-dir')

    def start(self, spec: dict, clean: bool) -> None:
        """Record the job before a tool runs: in an emptied folder when ``clean``, else as one
        more resumption of the job recorded there."""
        if clean and osp.isdir(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)
        state = None if clean else self.state()
        if state is None:
            state = dict(spec=spec, trained=False, resumes=0)
        else:
            state['resumes'] = state.get('resumes', 0) + 1
        write_json(self.file(SPEC_FILE), state)

    def mark_trained(self) -> None:
        """Record that tools/train.py has ended normally."""
        state = self.state()
        state['trained'] = True
        write_json(self.file(SPEC_FILE), state)

    def finish(self, record: dict) -> None:
        """Write the final record; the job is finished from then on."""
        write_json(self.file(METRICS_FILE), record)
