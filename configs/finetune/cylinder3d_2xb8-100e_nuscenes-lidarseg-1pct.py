# Finetuning a pretrained cylinder3d on 1% of nuScenes lidarseg train (SLidR's few-shot
# subset), evaluated with mmdet3d's SegMetric on the 150 val scenes. The pretraining checkpoint:
# --cfg-options model.backbone.init_cfg.checkpoint=PATH (MinkUNet) or
# model.init_cfg.checkpoint=PATH (Cylinder3D); set that init_cfg to None for random init.
_base_ = [
    '../_base_/models/cylinder3d_segmentor.py', '../_base_/datasets/nuscenes_lidarseg.py',
    '../_base_/schedules/finetune_sgd_100e.py', '../_base_/default_runtime.py'
]
train_dataloader = dict(dataset=dict(few_shot=1))
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
