"""The command that makes a missing file of a dataset: its info file, its superpixel maps, or,
for the raw data (points, images, labels), where the dataset was expected.

Error messages of the dataset checks (:mod:`.info_file_checks`, ``DataFilesCheckHook``) give
these commands with the data root, prefixes and info files of the run's own config, so that
the user can paste them.
"""
import os.path as osp
import re
import shlex
from typing import Dict, List, Optional, Sequence

#: the line every data-check error ends with: what to do when the files are not on a local
#: file system
SKIP_HINT = ('Files in object storage cannot be checked by a stat: skip the check with '
             '--cfg-options default_hooks.data_files.skip=True')


def _cmd(*parts: str) -> str:
    return ' '.join(shlex.quote(str(p)) for p in parts)


def _root(data_root: Optional[str]) -> str:
    return data_root if data_root else '.'


def dataset_family(dataset_type: str, ann_file: str) -> Optional[str]:
    """``'nuscenes'``, ``'pandaset'``, ``'semantickitti'`` or None, from the dataset class
    name and the info file name (``<family>_infos_<split>.pkl``, as this project's info tools
    name them)."""
    name = osp.basename(ann_file).lower()
    kind = dataset_type.lower()
    for family in ('pandaset', 'semantickitti', 'nuscenes'):
        if name.startswith(family) or kind.startswith(family):
            return family
    return None


def info_command(dataset_type: str, ann_file: str, data_root: Optional[str]) -> str:
    """The command that writes ``ann_file``, or a sentence saying which tool writes it.

    Args:
        dataset_type (str): The dataset's class name.
        ann_file (str): The info file as the dataset holds it (joined to the data root).
        data_root (str, optional): The dataset's data root.
    """
    family = dataset_family(dataset_type, ann_file)
    out_dir = osp.dirname(ann_file) or '.'
    base = osp.basename(ann_file)
    if family == 'nuscenes':
        root = _root(data_root)
        version = ('v1.0-mini' if osp.isdir(osp.join(root, 'v1.0-mini'))
                   and not osp.isdir(osp.join(root, 'v1.0-trainval')) else 'v1.0-trainval')
        args = ['python', 'tools/create_pretrain_infos.py', '--root', root, '--version', version,
                '--out-dir', out_dir]
        m = re.match(r'^(.+?)_(pretrain_val|pretrain|train|val)\.pkl$', base)
        if m:
            args += ['--splits', m.group(2)]
            if m.group(1) != 'nuscenes_infos':
                args += ['--prefix', m.group(1)]
        return _cmd(*args)
    if family == 'pandaset':
        m = re.match(r'^(.+)_infos_(.+)\.pkl$', base)
        split = m.group(2) if m else None
        cmd = _cmd('python', 'tools/create_pandaset_infos.py', '--out-dir', out_dir)
        cmd += ' --root <PandaSet root>'
        if split and split != 'all':
            cmd += f' --split {shlex.quote(split)}=<its sequences, or @FILE>'
        if m and m.group(1) != 'pandaset':
            cmd += ' ' + _cmd('--prefix', m.group(1) + '_infos')
        return cmd
    if family == 'semantickitti':
        m = re.match(r'^(.+)_infos_(.+)\.pkl$', base)
        args = ['python', 'tools/create_semantickitti_infos.py', '--root', _root(data_root),
                '--out-dir', out_dir]
        if m and m.group(1) != 'semantickitti':
            args += ['--prefix', m.group(1)]
        return _cmd(*args)
    return (f'the info tool of {dataset_type} (this project ships tools/create_pretrain_infos.py, '
            'tools/create_pandaset_infos.py and tools/create_semantickitti_infos.py; mmdet3d '
            'its tools/create_data.py)')


def superpixel_arguments(dataset, cameras: Sequence[str]) -> Optional[Dict[str, str]]:
    """The ``tools/create_superpixels.py`` arguments that write the maps an
    ``ImageLidarPretrainDataset`` reads for ``cameras``: ``data_root``, ``img_prefix`` (with
    ``{cam}`` where the cameras' image folders differ by their name), ``out_dir`` and
    ``format``; None when no single command fits (image folders that differ otherwise, or a
    ``superpixel_suffix`` the tool does not write)."""
    fmt = {'.npz': 'npz', '.png': 'png'}.get(dataset.superpixel_suffix)
    if fmt is None or not cameras:
        return None
    root = _root(dataset.data_root)
    prefixes = {cam: osp.relpath(dataset.image_prefix(cam), root) for cam in cameras}
    templates = {p.replace(cam, '{cam}') if cam in p else p for cam, p in prefixes.items()}
    if len(templates) != 1:
        return None
    template = templates.pop()
    if any(template.format(cam=cam) != p for cam, p in prefixes.items()):
        return None
    return dict(data_root=root, img_prefix=template,
                out_dir=dataset.data_prefix.get('sp', ''), format=fmt)


def superpixel_command(info_files: Sequence[str], args: Dict[str, str]) -> str:
    """The ``tools/create_superpixels.py`` command of :func:`superpixel_arguments` for the
    given info files (made resumable and deduplicated by the tool)."""
    parts = ['python', 'tools/create_superpixels.py', *info_files, '--data-root',
             args['data_root'], '--img-prefix', args['img_prefix'], '--out-dir', args['out_dir']]
    if args['format'] != 'npz':
        parts += ['--format', args['format']]
    return _cmd(*parts)


def commands_make(command_args: Dict[str, str], info_files: Sequence[str],
                  paths: Sequence[str]) -> bool:
    """Whether the superpixel command with these arguments writes every one of ``paths``
    (the tool's own job list, compared path by path)."""
    from ..preparation.superpixels import unique_jobs
    made = {osp.normpath(dst) for _, dst in unique_jobs(
        info_files, command_args['data_root'], command_args['img_prefix'],
        command_args['out_dir'], '.' + command_args['format'])}
    return all(osp.normpath(p) in made for p in paths)


def raw_data_hint(kind: str, missing: Sequence[str], limit: int = 3) -> str:
    """What a missing point, image or label file means: the dataset is not (all) at the data
    root; names the folders the files were expected in and whether each exists."""
    folders: List[str] = []
    for p in missing:
        folder = osp.dirname(p) or '.'
        if folder not in folders:
            folders.append(folder)
    shown = ', '.join(f'{f} ({"exists, files missing" if osp.isdir(f) else "does not exist"})'
                      for f in folders[:limit])
    more = f' and {len(folders) - limit} more folders' if len(folders) > limit else ''
    return (f'the dataset\'s {kind} are not at the data root: expected in {shown}{more}; '
            'download or link the dataset there (or fix data_root / data_prefix)')
