# DEMO few-shot finetuning: mmdet3d's MinkUNet segmentor with the demo student's backbone,
# initialised from a demo pretraining checkpoint (model.init_cfg.checkpoint=PATH, or random:
# model.init_cfg=None), on one scene of the demo world's train scenes (few_shot=25: every 4th
# train scene), evaluated with SegMetric on the demo validation scenes.
_base_ = ['../finetune/minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py', './demo_sizes.py']
data_root = 'data/demo/'
# the data's name in result tables (the dataset class is nuScenes')
dataset_name = 'demo world'
model = dict(
    backbone=_base_.demo_student_backbone,
    decode_head=dict(channels=_base_.demo_student_backbone.decoder_channels[-1]),
    init_cfg=dict(checkpoint='work_dirs/demo/stslidr/epoch_6.pth'))
train_dataloader = dict(batch_size=2, num_workers=1,
                        dataset=dict(data_root=data_root, few_shot=25))
val_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=30, by_epoch=True, eta_min=0)]
train_cfg = dict(max_epochs=30, val_interval=30)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=30))
randomness = dict(seed=0)
