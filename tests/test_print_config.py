"""tools/print_config.py as a user runs it: a shipped config, fully resolved, with an option."""
import sys

from mmengine.config import Config

from conftest import REPO_ROOT, ST_CONFIG, run_tool


def test_prints_the_resolved_config_with_the_option_applied():
    config = str(ST_CONFIG.relative_to(REPO_ROOT))
    out = run_tool([sys.executable, 'tools/print_config.py', config, '--cfg-options',
                    'train_dataloader.batch_size=3', 'model.student.backbone.base_channels=24'])
    assert 'batch_size=3' in out.stdout and 'base_channels=24' in out.stdout
    printed = Config.fromstring(out.stdout, '.py')
    assert printed.train_dataloader.batch_size == 3
    assert printed.model.student.backbone.base_channels == 24
    # fully resolved: every base's entries are there, equal to the config's own, plus what the
    # training tool sets (its default work dir and the launcher)
    expected = Config.fromfile(str(REPO_ROOT / config))
    expected.merge_from_dict({'train_dataloader.batch_size': 3,
                              'model.student.backbone.base_channels': 24})
    expected.work_dir = './work_dirs/' + ST_CONFIG.stem
    expected.launcher = 'none'
    assert printed.to_dict() == expected.to_dict()
    assert '_base_' not in out.stdout
