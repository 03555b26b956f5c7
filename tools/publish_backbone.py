#!/usr/bin/env python
"""Publish the student of a pretraining checkpoint, in the manner of mmdet3d's publish_model.py.

    python tools/publish_backbone.py work_dirs/stslidr/epoch_50.pth stslidr_minkunet34.pth
    # -> writes and prints stslidr_minkunet34-<sha256[:8]>.pth

A checkpoint written by ``tools/train.py`` for a pretraining config holds the student, its
projection, the frozen teacher, the 2D head, the optimizer state, the message hub and the
parameter schedulers. The published file keeps only what a segmentor loads: the student's
``backbone.*`` (and ``voxel_encoder.*`` for Cylinder3D) tensors, under the names of mmdet3d's
MinkUNet and Cylinder3D segmentors (see ``projects.img2lidar.models.student_checkpoint``), and a
small ``meta``: the source file's name and sha256, the config name, epoch and iteration, and the
mmengine and mmdet3d versions. Its name ends in the first 8 hex digits of its own sha256, as
``publish_model.py`` names files. A finetuning config loads it as it loads the pretraining
checkpoint (``--cfg-options model.init_cfg.checkpoint=FILE``), or through mmengine's
``init_cfg=dict(type='Pretrained', checkpoint=FILE, prefix='backbone.')`` on the backbone.
"""
import argparse
import hashlib
import os
import os.path as osp
import re
import sys
from typing import Optional, Tuple

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

#: the suffix mmengine's Runner adds to the config name in ``meta['experiment_name']``
TIMESTAMP = re.compile(r'_\d{8}_\d{6}$')


def sha256(path: str) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def config_name(meta: dict) -> Optional[str]:
    """The config's file name without extension, from mmengine's ``experiment_name``
    (``<config name>_<YYYYmmdd_HHMMSS>``); None when the run had no config file."""
    name = meta.get('experiment_name')
    if not name or not TIMESTAMP.search(name):
        return None
    return TIMESTAMP.sub('', name) or None


def published_meta(in_file: str, source_meta: dict, parts: Tuple[str, ...]) -> dict:
    """The ``meta`` of the published file.

    Args:
        in_file (str): The pretraining checkpoint.
        source_meta (dict): Its ``meta`` (mmengine's: ``epoch``, ``iter``,
            ``experiment_name``, ``mmengine_version``, ...).
        parts (tuple[str]): The top-level names kept.

    Returns:
        dict: ``source_checkpoint`` (file name), ``source_sha256``, ``config``,
        ``experiment_name``, ``epoch``, ``iter``, ``parts``, ``mmengine_version`` (the training
        run's, else the installed one) and ``mmdet3d_version`` (the installed one: mmengine
        does not record it).
    """
    import mmdet3d
    import mmengine
    return dict(
        source_checkpoint=osp.basename(in_file),
        source_sha256=sha256(in_file),
        config=config_name(source_meta),
        experiment_name=source_meta.get('experiment_name'),
        epoch=source_meta.get('epoch'),
        iter=source_meta.get('iter'),
        parts=list(parts),
        mmengine_version=source_meta.get('mmengine_version', mmengine.__version__),
        mmdet3d_version=mmdet3d.__version__)


def final_name(out_file: str, digest: str) -> str:
    """``<out_file without .pth>-<digest[:8]>.pth``."""
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    return f'{stem}-{digest[:8]}.pth'


def publish_backbone(in_file: str, out_file: str) -> str:
    """Write the student of ``in_file`` to ``<out_file stem>-<sha256[:8]>.pth``.

    Args:
        in_file (str): A pretraining checkpoint (what ``tools/train.py`` writes).
        out_file (str): The output name before the hash (``.pth`` optional).

    Returns:
        str: The path written.

    Raises:
        FileNotFoundError: ``in_file`` does not exist.
        ValueError: ``in_file`` is not a checkpoint with a ``state_dict``, or holds no student
            weights (both name the file and what it holds).
    """
    import torch

    import projects.img2lidar  # noqa: F401  (loads mmengine checkpoints with torch >= 2.6)
    from projects.img2lidar.models.student_checkpoint import (PretrainedStudentInit,
                                                              student_weights)
    if not osp.isfile(in_file):
        raise FileNotFoundError(f'checkpoint not found: {in_file}')
    ckpt = torch.load(in_file, map_location='cpu')
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        held = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f'{in_file}: not an mmengine checkpoint with a state_dict (it holds '
                         f'{held})')
    state = student_weights(ckpt['state_dict'])
    if not state:
        tops = sorted({k.split('.', 1)[0] for k in ckpt['state_dict']})
        raise ValueError(
            f'{in_file}: no student weights (keys under {PretrainedStudentInit.STUDENT_PARTS}); '
            f'its state_dict has the top-level names {tops}. Expected a pretraining checkpoint '
            'of tools/train.py')
    parts = tuple(p for p in PretrainedStudentInit.STUDENT_PARTS
                  if any(k.startswith(p + '.') for k in state))
    # own storage per tensor: a view would carry the whole storage it came from into the file
    state = {k: v.detach().clone() for k, v in state.items()}
    meta = published_meta(in_file, ckpt.get('meta') or {}, parts)
    published = dict(state_dict=state, meta=meta)
    dropped = sorted({k.split('.', 1)[0] for k in ckpt['state_dict']} - set(parts)) + sorted(
        k for k in ckpt if k not in ('state_dict', 'meta'))
    tmp = f'{out_file}.tmp{os.getpid()}'
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    torch.save(published, tmp)
    final = final_name(out_file, sha256(tmp))
    os.replace(tmp, final)
    print(f'kept {len(state)} tensors of {", ".join(parts)}; dropped {", ".join(dropped)}')
    return final


def main(argv=None) -> int:
    """Parse the command line, publish and print the written path.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: 0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('in_file', help='pretraining checkpoint (from tools/train.py)')
    parser.add_argument('out_file', help='output name; <out_file stem>-<sha256[:8]>.pth is '
                        'written')
    args = parser.parse_args(argv)
    print(publish_backbone(args.in_file, args.out_file))
    return 0


if __name__ == '__main__':
    sys.exit(main())
