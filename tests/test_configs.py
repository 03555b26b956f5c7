"""Every shipped config parses and its model builds through the registries."""
import glob
import os

import pytest
from mmdet3d.registry import MODELS
from mmengine.config import Config

from conftest import REPO_ROOT

CONFIGS = sorted(p for p in glob.glob(str(REPO_ROOT / 'configs' / '*' / '*.py'))
                 if os.sep + '_base_' + os.sep not in p)


def test_there_are_configs_for_every_protocol():
    names = [os.path.relpath(p, REPO_ROOT / 'configs') for p in CONFIGS]
    for method in ('slidr', 'st-slidr', 'relational', 'ppkt', 'similarity'):
        assert sum(n.startswith(method + os.sep) for n in names) == 2, method
    assert sum(n.startswith('finetune' + os.sep) for n in names) == 6
    assert sum(n.startswith('linear_probe' + os.sep) for n in names) == 2
    assert sum(n.startswith('zero_shot' + os.sep) for n in names) == 2


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports['imports'] == ['projects.img2lidar']
    if os.sep + 'zero_shot' + os.sep in path:
        # they read a local CLIP directory / text embeddings when built: tests/test_zero_shot.py
        assert cfg.model.type in ('ImageLidarDistiller', 'ZeroShotSegmentor')
        return
    model = MODELS.build(cfg.model)  # weights are not loaded here (no init_weights)
    assert sum(p.numel() for p in model.parameters()) > 1e6
    if 'train_dataloader' in cfg:
        assert cfg.train_dataloader.dataset.type in (
            'ImageLidarPretrainDataset', 'NuScenesLidarSegDataset', 'SemanticKittiFewShotDataset')
