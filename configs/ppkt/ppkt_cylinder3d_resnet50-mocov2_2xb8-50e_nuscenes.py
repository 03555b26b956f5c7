# PPKT baseline: point-level InfoNCE over 4096 random point-pixel pairs.
# cylinder3d student, frozen ResNet-50 (MoCo v2) teacher: see the base for data and schedule.
_base_ = ['../_base_/pretrain/cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py']
model = dict(losses=dict(loss_ppkt=dict(type='PPKTLoss', num_pairs=4096, tau=0.07)))
