# Finetuning a pretrained cylinder3d on all of nuScenes lidarseg train; see the 1% config.
_base_ = ['./cylinder3d_2xb8-100e_nuscenes-lidarseg-1pct.py']
train_dataloader = dict(dataset=dict(few_shot=100))
