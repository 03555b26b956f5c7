"""Linear probing: the pretrained backbone stays bit-identical (weights and BN buffers)."""
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from conftest import SEMANTICKITTI_FIXTURE, finetune_config, pretrained_distiller_checkpoint


def test_linear_probe_freezes_backbone_and_trains_classifier(tmp_path):
    root = SEMANTICKITTI_FIXTURE
    pretrained = pretrained_distiller_checkpoint(tmp_path / 'pretrained.pth')
    cfg_path = finetune_config(tmp_path / 'probe.py', root, tmp_path / 'pretrained.pth',
                                model_type='LinearProbeMinkUNet', iters=4)
    cfg = Config.fromfile(str(cfg_path))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    start = {}

    class RecordStart(Hook):
        def before_train(self, runner):
            m = runner.model
            start['head'] = m.decode_head.conv_seg.weight.detach().clone()
            start['backbone'] = {k: v.clone() for k, v in m.backbone.state_dict().items()}

    runner.register_hook(RecordStart())
    runner.train()
    model = runner.model
    model.train()  # the run ended with validation (eval mode)
    assert model.decode_head.training and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    after = model.backbone.state_dict()
    assert any(k.endswith('running_mean') for k in after)
    for k, v in pretrained.items():  # weights and BN buffers: exactly the pretrained ones
        assert torch.equal(after[k], v), k
    state = torch.load(tmp_path / 'work' / 'iter_4.pth', map_location='cpu')['state_dict']
    head = {k: v for k, v in state.items() if k.startswith('decode_head.')}
    assert head and all(p.requires_grad for p in model.decode_head.parameters())
    # the classifier moved away from the weights it started training with, the backbone did not
    assert not torch.equal(start['head'], model.decode_head.conv_seg.weight)
    for k, v in start['backbone'].items():
        assert torch.equal(after[k], v), k
