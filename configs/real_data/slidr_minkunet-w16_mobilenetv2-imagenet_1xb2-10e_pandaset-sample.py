# REAL-DATA CHECK pretraining (SLidR's superpixel InfoNCE) on the labelled PandaSet frames of the
# sample's training sequences 001 and 002 (8 frames; sequence 003 is held out), without their
# labels, from a real ImageNet teacher: the PandaSet pretraining base at the check's sizes
# (./real_data_sizes.py), 10 epochs of batch 2, SGD lr 0.05 with a cosine schedule, no
# validation. tools/real_data_check.py runs it (and the other methods, which inherit this file
# and set their losses) for every seed, then probes the frozen features; its --transductive
# variant sets ann_file to pandaset_infos_all.pkl (all 10 frames, 003 included).
_base_ = ['../_base_/pretrain/minkunet34_mobilenetv2-imagenet_pandaset.py', './real_data_sizes.py']
model = dict(
    data_preprocessor=dict(voxel_layer=dict(voxel_size=_base_.real_voxel_size)),
    student=dict(backbone=_base_.real_student_backbone),
    teacher=dict(checkpoint=_base_.real_teacher_checkpoint),
    losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
train_pipeline = [
    dict(_base_.train_pipeline[0], max_range=_base_.real_max_range), *_base_.train_pipeline[1:]
]
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=False,
    dataset=dict(data_root=_base_.real_data_root, ann_file='pandaset_infos_train.pkl',
                 pipeline=train_pipeline))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=_base_.real_epochs, by_epoch=True,
                        eta_min=0)]
train_cfg = dict(max_epochs=_base_.real_epochs, val_interval=100)
custom_hooks = []
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=_base_.real_epochs))
log_processor = dict(window_size=5)
randomness = dict(seed=0)
