# Finetuning a reference-pretrained (cylindrical voxels) backbone on all of nuScenes lidarseg.
_base_ = ['./minkunet34-cyl_2xb8-100e_nuscenes-lidarseg-1pct.py']
train_dataloader = dict(dataset=dict(few_shot=100))
