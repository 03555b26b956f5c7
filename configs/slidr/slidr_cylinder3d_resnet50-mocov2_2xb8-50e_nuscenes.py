# SLidR: superpixel-driven InfoNCE (Sautier et al., CVPR 2022).
# cylinder3d student, frozen ResNet-50 (MoCo v2) teacher: see the base for data and schedule.
_base_ = ['../_base_/pretrain/cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py']
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
