# SLidR's finetuning recipe: SGD momentum 0.9, lr 0.02 for the backbone and 2.0 for the
# classifier (lr_mult 100), weight decay 1e-4, cosine over 100 epochs; batch 16 over the GPUs.
# It carries the runtime (a checkpoint every 10 epochs, the last 2 kept).
_base_ = ['../default_runtime.py']
optim_wrapper = dict(
    type='FiniteCheckOptimWrapper',  # no step on a non-finite loss or gradient
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=100.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=100, by_epoch=True, eta_min=0)]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=100, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2))
