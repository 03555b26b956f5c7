"""Every command block of the user docs runs, exactly as written (see tests/doc_commands.py).

The blocks run in a workspace laid out like a checkout (the repository's tools, configs,
package and virtual environment linked in) that holds the data the docs name:

- ``data/nuscenes``: the nuScenes-format demo world written as v1.0-trainval with lidarseg
  (4 scenes, one keyframe each: train scene-0061 and scene-1094 (one of SLidR's held-out
  pretraining scenes), val scene-0103 and scene-0553), plus 98 train scenes that copy
  scene-0061's keyframe, so that SLidR's 1% split (the 100th train scene) is not empty;
- ``data/semantickitti``: the SemanticKITTI fixture of tests/data as sequence 00, and its first
  scan in each of the other 21 sequences (with labels in 01-10; 08 is the validation one);
- ``moco_v2_800ep_pretrain.pth.tar``: a MoCo v2 checkpoint in the release's layout with random
  weights; ``checkpoints/clip-vit-base-patch16``: a tiny random CLIP (transformers directory);
- ``data/pandaset``: a synthetic PandaSet root in PandaSet's own layout;
- ``data/pandaset_sample``: a link to the optional PandaSet sample (the real-data flow, which
  skips without it).

Only sizes change, through the documented ``IMG2LIDAR_TINY=1`` (projects/img2lidar/engine/
tiny_sizes.py: the last epoch of each schedule, batch 1, one sample per dataset, small students
and crops, one evaluation seed). Each flow runs its blocks in the order a user would and checks
what each one promised to write.
"""
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from conftest import REPO_ROOT, SEMANTICKITTI_FIXTURE, require, PANDASET_SAMPLE
from doc_commands import all_blocks, run_block
from tiny_sam import write_tiny_sam

#: blocks run by each flow, in order
FLOWS: Dict[str, List[str]] = {
    'nuscenes': ['nuscenes-prepare', 'semantickitti-prepare', 'verify-data', 'pretrain',
                 'publish', 'downstream', 'evaluate', 'zero-shot', 'look', 'distributed'],
    'pandaset': ['pandaset-prepare'],
    'slurm': ['slurm'],
    'regions': ['regions'],
    'real-data': ['real-data-check', 'real-data-ablation'],
}
#: blocks run by a test in another file (which must call run_block with the name)
RUN_ELSEWHERE = {
    'teacher-checks': 'tests/test_real_teacher.py',
}
#: blocks no test runs, and why
EXEMPT = {
    'readme-commands': 'the README\'s two commands: .ci/run runs the test command, and '
                       'tools/demo.sh is the main job (docs/demo.md)',
    'install-existing-env': 'an install into an existing mmdet3d environment; the suite runs '
                            'in the environment tools/setup_env.sh makes',
    'install-offline': 'needs a wheel folder made where a registry is reachable',
    'gpu-check': 'needs a GPU machine (tools/gpu_check.sh --dry-run is tested)',
}
WORKSPACE_LINKS = ['tools', 'configs', 'projects', 'requirements', 'setup.py']
NUSCENES_SCENES = ['scene-0061', 'scene-0553', 'scene-1094', 'scene-0103']
#: copies of scene-0061 that make the train split 100 scenes long (SLidR's 1% keeps the 100th)
CLONES = 98
CLIP_EMBED_DIM = 512  # the zero-shot configs' embed_dim


def test_every_command_block_is_named_and_run():
    blocks = all_blocks()
    run = [name for names in FLOWS.values() for name in names] + list(RUN_ELSEWHERE)
    for name, test_file in RUN_ELSEWHERE.items():
        assert f"run_block(REPO_ROOT, '{name}'" in (REPO_ROOT / test_file).read_text(), \
            f'{test_file} does not run the block {name!r}'
    assert len(run) == len(set(run)), 'a block is run by two flows'
    assert not set(run) & set(EXEMPT)
    unknown = set(run) - set(blocks)
    assert not unknown, f'flows name blocks that no doc has: {sorted(unknown)}'
    stale = set(EXEMPT) - set(blocks)
    assert not stale, f'exemptions for blocks that no doc has: {sorted(stale)}'
    never = set(blocks) - set(run) - set(EXEMPT)
    assert not never, ('command blocks that no test runs: ' +
                       ', '.join(f'{blocks[n].doc}:{blocks[n].line} ({n})' for n in sorted(never)))


# -- the workspace ---------------------------------------------------------------------------
def _tiny_clip(path: Path) -> None:
    """A random CLIP with 32-wide towers and the zero-shot configs' 512-dim joint space."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1}
    for c in range(33, 127):
        vocab[chr(c)] = len(vocab)
        vocab[chr(c) + '</w>'] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=64,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tower, patch_size=8, image_size=32), projection_dim=CLIP_EMBED_DIM)
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(path)


def _moco_v2_release(path: Path) -> None:
    """A MoCo v2 checkpoint in the release's layout (query and key encoders, queue), random."""
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    encoder = ResNet(depth=50).state_dict()
    state = {}
    for branch in ('encoder_q', 'encoder_k'):
        state.update({f'module.{branch}.{k}': v for k, v in encoder.items()})
        state.update({f'module.{branch}.fc.0.weight': torch.randn(2048, 2048) * 0.01,
                      f'module.{branch}.fc.0.bias': torch.zeros(2048),
                      f'module.{branch}.fc.2.weight': torch.randn(128, 2048) * 0.01,
                      f'module.{branch}.fc.2.bias': torch.zeros(128)})
    state['module.queue'] = torch.randn(128, 16)
    state['module.queue_ptr'] = torch.zeros(1, dtype=torch.long)
    torch.save({'epoch': 800, 'arch': 'resnet50', 'state_dict': state}, path)


def _semantickitti(root: Path) -> None:
    """SemanticKITTI's layout for all 22 sequences: the fixture's sequence 00, and in every other
    sequence its first scan (with its labels in the labelled sequences 01-10)."""
    fixture = SEMANTICKITTI_FIXTURE / 'sequences' / '00'
    shutil.copytree(fixture, root / 'sequences' / '00')
    scan = sorted((fixture / 'velodyne').glob('*.bin'))[0]
    label = fixture / 'labels' / (scan.stem + '.label')
    for seq in range(1, 22):
        folder = root / 'sequences' / f'{seq:02d}'
        (folder / 'velodyne').mkdir(parents=True)
        os.symlink(scan, folder / 'velodyne' / scan.name)
        if seq <= 10:
            (folder / 'labels').mkdir()
            os.symlink(label, folder / 'labels' / label.name)


def _clone_train_scenes(root: Path, version: str, source: str, count: int) -> List[str]:
    """Add ``count`` train scenes to a written world's tables, each a copy of scene ``source``
    that reads the same files, so that SLidR's 1% rule (every 100th train scene in table order)
    has a scene to keep without rendering a hundred. Returns their names."""
    import json
    from nuscenes.utils.splits import train
    from projects.img2lidar.splits import NUSCENES_PRETRAIN_VAL_SCENES, read_name_list
    tables = {n: json.loads((root / version / f'{n}.json').read_text())
              for n in ('scene', 'sample', 'sample_data', 'lidarseg')}
    taken = {s['name'] for s in tables['scene']} | set(read_name_list(
        str(NUSCENES_PRETRAIN_VAL_SCENES)))
    names = [n for n in train if n not in taken][:count]
    scene = next(s for s in tables['scene'] if s['name'] == source)
    samples = [s for s in tables['sample'] if s['scene_token'] == scene['token']]
    assert len(samples) == 1, 'clones copy a one-keyframe scene'
    data = [d for d in tables['sample_data'] if d['sample_token'] == samples[0]['token']]
    segs = {s['sample_data_token']: s for s in tables['lidarseg']}
    for name in names:
        sample = dict(samples[0], token=f'sample_{name}_0', scene_token=f'scene_{name}')
        tables['scene'].append(dict(scene, token=f'scene_{name}', name=name,
                                    first_sample_token=sample['token'],
                                    last_sample_token=sample['token']))
        tables['sample'].append(sample)
        for d in data:
            token = d['token'].replace(samples[0]['token'], sample['token'])
            tables['sample_data'].append(dict(d, token=token, sample_token=sample['token']))
            if d['token'] in segs:  # the devkit wants one label file per record: a link
                seg = segs[d['token']]
                filename = seg['filename'].replace(d['token'], token)
                os.symlink(root / seg['filename'], root / filename)
                tables['lidarseg'].append(dict(seg, token=token, sample_data_token=token,
                                               filename=filename))
    for n, table in tables.items():
        (root / version / f'{n}.json').write_text(json.dumps(table))
    return names


@pytest.fixture(scope='module')
def workspace(tmp_path_factory) -> Path:
    from projects.img2lidar.demo import write_world
    ws = tmp_path_factory.mktemp('doc_workspace')
    for name in WORKSPACE_LINKS:
        os.symlink(REPO_ROOT / name, ws / name)
    os.symlink(Path(sys.prefix), ws / '.venv')  # the environment running the suite
    write_world(str(ws / 'data' / 'nuscenes'), NUSCENES_SCENES, samples_per_scene=1,
                version='v1.0-trainval', seed=0)
    _clone_train_scenes(ws / 'data' / 'nuscenes', 'v1.0-trainval', 'scene-0061', CLONES)
    _semantickitti(ws / 'data' / 'semantickitti')
    _moco_v2_release(ws / 'moco_v2_800ep_pretrain.pth.tar')
    _tiny_clip(ws / 'checkpoints' / 'clip-vit-base-patch16')
    return ws


def _pngs(folder: Path) -> List[Path]:
    return sorted(folder.rglob('*.png'))


def _samples(info: Path) -> int:
    with open(info, 'rb') as f:
        return len(pickle.load(f)['data_list'])


# -- the flows -------------------------------------------------------------------------------
def test_nuscenes_flow(workspace):
    """Data preparation, pretraining with its validation, publishing, probing, finetuning,
    testing, the evaluation harness and its table, zero-shot, pictures, distributed runs."""
    ws, data = workspace, workspace / 'data' / 'nuscenes'

    run_block(ws, 'nuscenes-prepare')
    counts = {s: _samples(data / f'nuscenes_infos_{s}.pkl')
              for s in ('pretrain', 'pretrain_val', 'train', 'val')}
    # scene-1094 is one of SLidR's 100 held-out scenes; scene-0553 and scene-0103 are val scenes
    assert counts == dict(pretrain=1 + CLONES, pretrain_val=1, train=2 + CLONES, val=2)
    # both pretraining splits: scene-0061 (its clones read its images) and scene-1094
    assert len(list((data / 'superpixels').rglob('*.npz'))) == 6 * 2
    assert (ws / 'checkpoints' / 'resnet50_mocov2.pth').is_file()

    run_block(ws, 'semantickitti-prepare')
    sk = ws / 'data' / 'semantickitti'
    n_00 = len(list((SEMANTICKITTI_FIXTURE / 'sequences' / '00' / 'velodyne').glob('*.bin')))
    assert _samples(sk / 'semantickitti_infos_train.pkl') == n_00 + 9  # and 01-07, 09, 10
    assert _samples(sk / 'semantickitti_infos_val.pkl') == 1  # 08
    assert _samples(sk / 'semantickitti_infos_test.pkl') == 11  # 11-21

    run_block(ws, 'verify-data')

    out = run_block(ws, 'pretrain')
    pretrain_dir = ws / 'work_dirs' / 'stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes'
    assert (pretrain_dir / 'epoch_50.pth').is_file()
    assert 'structural_gap/gap_intra' in out  # the validation on the held-out split ran

    out = run_block(ws, 'publish')
    published = re.findall(r'work_dirs/stslidr_minkunet34_nuscenes-[0-9a-f]{8}\.pth', out)
    assert published and (ws / published[-1]).is_file()

    run_block(ws, 'downstream')
    assert (ws / 'work_dirs' / 'minkunet34_linear-probe_2xb8-100e_nuscenes-lidarseg' /
            'epoch_100.pth').is_file()
    assert (ws / 'work_dirs' / 'minkunet34_2xb8-100e_nuscenes-lidarseg-1pct' /
            'epoch_100.pth').is_file()
    # the pictures go under the test run's own work dir and timestamp, as in mmdet3d
    predictions = list((ws / 'work_dirs' / 'minkunet34_2xb8-100e_nuscenes-lidarseg-1pct').glob(
        '*/predictions'))
    assert len(predictions) == 1 and len(_pngs(predictions[0])) == 1  # tiny: one test sample

    run_block(ws, 'evaluate')
    table = (ws / 'work_dirs' / 'results.md').read_text()
    for column in ('nuScenes 1%', 'SemanticKITTI 1%'):
        assert column in table
    assert (ws / 'work_dirs' / 'results.png').is_file()

    out = run_block(ws, 'zero-shot')
    assert (ws / 'checkpoints' / 'text_nuscenes_clip-vitb16.pth').is_file()
    assert 'miou' in out

    run_block(ws, 'look')
    assert _pngs(ws / 'work_dirs' / 'browse') and _pngs(ws / 'work_dirs' / 'vis')

    run_block(ws, 'distributed')
    assert (ws / 'work_dirs' / 'stslidr_2proc' / 'epoch_50.pth').is_file()


def test_pandaset_flow(workspace):
    """PandaSet's split lists, conversion and the superpixels of both splits, on a synthetic
    root in PandaSet's own layout: sequence 001 north of latitude 37.6 (train) and a copy of it,
    002, south of it (val)."""
    import json
    from synthetic_pandaset import FRAMES, SEQUENCE, write_synthetic_pandaset
    root = workspace / 'data' / 'pandaset'
    write_synthetic_pandaset(root)
    shutil.copytree(root / SEQUENCE, root / '002', symlinks=True)
    gps = json.loads((root / '002' / 'meta' / 'gps.json').read_text())
    (root / '002' / 'meta' / 'gps.json').write_text(json.dumps([dict(g, lat=37.3) for g in gps]))

    run_block(workspace, 'pandaset-prepare')
    assert (workspace / 'pandaset_train.txt').read_text().split() == [SEQUENCE]
    assert (workspace / 'pandaset_val.txt').read_text().split() == ['002']
    out = workspace / 'data' / 'pandaset_converted'
    assert _samples(out / 'pandaset_infos_train.pkl') == _samples(
        out / 'pandaset_infos_val.pkl') == len(FRAMES)
    # one camera per frame in the synthetic root: a map per image of both splits
    assert len(list((out / 'superpixels').rglob('*.npz'))) == 2 * len(FRAMES)


def _released_maps(data: Path, folder: Path) -> int:
    """Maps as a peer releases them for the pretraining split's images: one uint8
    ``<sample_data token>.png`` each, 40-pixel blocks with ids from 1 and 0 (no mask) on the top
    rows. Returns how many images (scene-0061's clones share its image files)."""
    import cv2
    import numpy as np
    with open(data / 'nuscenes_infos_pretrain.pkl', 'rb') as f:
        infos = pickle.load(f)['data_list']
    images = {cam['sample_data_token']: data / 'samples' / name / cam['img_path']
              for info in infos for name, cam in info['images'].items()}
    folder.mkdir(parents=True)
    for token, path in images.items():
        h, w = cv2.imread(str(path)).shape[:2]
        yy, xx = np.mgrid[:h, :w]
        ids = (yy // 40) * ((w + 39) // 40) + xx // 40 + 1
        ids[:10] = 0
        cv2.imwrite(str(folder / f'{token}.png'), (ids % 250).astype(np.uint8))
    return len(set(images.values()))


def test_regions_flow(workspace):
    """The region sources' commands: SAM masks from a local checkpoint (a tiny random SAM in
    ``checkpoints/sam-vit-base``), the teacher codebook, released maps with 0 as "no mask",
    and the map checker."""
    import json

    import numpy as np
    from projects.img2lidar.datasets.transforms.superpixel_map import read_superpixels
    ws, data = workspace, workspace / 'data' / 'nuscenes'
    if not (data / 'nuscenes_infos_pretrain.pkl').exists():
        run_block(ws, 'nuscenes-prepare')
    write_tiny_sam(ws / 'checkpoints' / 'sam-vit-base')
    n = _released_maps(data, ws / 'data' / 'released_sam')
    out = run_block(ws, 'regions')
    for name in ('slic', 'sam', 'teacher_kmeans', 'precomputed'):
        assert re.search(rf'^{name} ', out, re.M), name
    for folder, generator in (('superpixels_sam', 'sam'),
                              ('superpixels_codebook', 'teacher_kmeans'),
                              ('superpixels_released', 'precomputed')):
        maps = sorted((data / folder).glob('*/*.npz'))  # CAM_*/<stem>.npz
        assert len(maps) == n, folder
        sidecar = json.loads((data / folder / 'superpixels.json').read_text())
        assert sidecar['generator'] == generator, sidecar
    assert (data / 'superpixels_codebook' / 'teacher_codebook.npz').is_file()
    released = read_superpixels(str(sorted((data / 'superpixels_released').glob('*/*.npz'))[0]))
    assert (released[:10] == -1).all() and released[10:].min() == 0  # 0 -> -1, ids from 0
    assert np.unique(released[10:]).tolist() == list(range(released.max() + 1))


def test_slurm_flow(workspace):
    """The Slurm commands, on a one-node cluster on this machine (opt-in, as tests/test_slurm.py:
    IMG2LIDAR_SLURM_TEST=1, root; CI sets it)."""
    if os.environ.get('IMG2LIDAR_SLURM_TEST') != '1' or os.geteuid() != 0:
        pytest.skip('set IMG2LIDAR_SLURM_TEST=1 (as root) to start a local Slurm cluster')
    data = workspace / 'data' / 'nuscenes'
    if not (data / 'nuscenes_infos_pretrain.pkl').exists():
        run_block(workspace, 'nuscenes-prepare')
    block = all_blocks()['slurm']
    script = workspace / 'slurm_block.sh'
    script.write_text(block.text)
    env = dict(os.environ, IMG2LIDAR_TINY='1')
    res = subprocess.run(['bash', str(REPO_ROOT / 'tests/slurm/run_slurm_localhost.sh'),
                          '--run', str(workspace), str(script), str(workspace / 'slurm_run')],
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert (workspace / 'work_dirs' / 'stslidr_slurm' / 'epoch_50.pth').is_file()


def test_real_data_flow(workspace):
    """The real-data check's command, on the optional PandaSet sample linked in as
    ``data/pandaset_sample``: a smoke run (one seed, tiny pretraining, the smallest probe) that
    writes its held-out report."""
    import json
    sample = require(PANDASET_SAMPLE)
    link = workspace / 'data' / 'pandaset_sample'
    link.parent.mkdir(exist_ok=True)
    if not link.exists():
        os.symlink(sample, link)
    out = run_block(workspace, 'real-data-check')
    assert 'a smoke run, not a result' in out
    results = workspace / 'work_dirs' / 'real_data'
    data = json.loads((results / 'results.json').read_text())
    assert data['variant'] == 'held-out' and data['smoke'] and data['seeds'] == 1
    assert data['pretraining']['sequences'] == ['001', '002']
    table = (results / 'results.md').read_text()
    assert table.startswith('**Smoke run') and '\nHeld out: ' in table
    assert 'SLidR' in table and 'Paired differences from SLidR' in table
    # the other rows of ST-SLidR's ablation, and the region sources, each reported apart
    run_block(workspace, 'real-data-ablation')
    ablation = json.loads((results / 'results_stslidr_ablation.json').read_text())
    assert {'SLidR', 'ST', 'CB', 'ST-SLidR (ST + CB)', 'ST + CB (nearest)', 'CB (adaptive)',
            'ST + CB (adaptive)'} <= set(ablation['scores'])
    regions = json.loads((results / 'results_regions.json').read_text())
    assert {'SLidR', 'SLidR, teacher k-means per image', 'SLidR, teacher codebook'} <= set(
        regions['scores'])
    assert regions['pretraining']['regions']['teacher_codebook']['folder'] == \
        'superpixels_teacher_codebook_train'
    assert json.loads((results / 'results.json').read_text())['scores'].keys() == \
        data['scores'].keys()  # the default report is not overwritten
