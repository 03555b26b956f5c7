# Linear probing of a reference-pretrained (cylindrical voxels, intensity only) backbone.
_base_ = ['../finetune/minkunet34-cyl_2xb8-100e_nuscenes-lidarseg-100pct.py']
model = dict(type='LinearProbeMinkUNet')
optim_wrapper = dict(optimizer=dict(lr=0.05), paramwise_cfg=dict(_delete_=True))
