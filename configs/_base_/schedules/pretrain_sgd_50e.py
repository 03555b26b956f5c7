# SLidR / ST-SLidR pretraining recipe: 50 epochs, SGD lr 0.5 (momentum 0.9, dampening 0.1,
# weight decay 1e-4), cosine schedule, batch 16 over the GPUs.
optim_wrapper = dict(
    type='FiniteCheckOptimWrapper',  # no step on a non-finite loss or gradient
    optimizer=dict(type='SGD', lr=0.5, momentum=0.9, dampening=0.1, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=50, by_epoch=True, eta_min=0)]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=50, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)
# a mid-epoch checkpoint every 500 iterations (the newest one kept) besides the epoch ones, so
# that a killed run resumes where it stopped (ResumableEpochBasedTrainLoop), losing little
custom_hooks = [
    dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=1, save_last=False)
]
