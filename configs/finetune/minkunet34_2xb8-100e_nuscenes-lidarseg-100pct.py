# Finetuning a pretrained minkunet34 on all of nuScenes lidarseg train; see the 1% config.
_base_ = ['./minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py']
train_dataloader = dict(dataset=dict(few_shot=100))
