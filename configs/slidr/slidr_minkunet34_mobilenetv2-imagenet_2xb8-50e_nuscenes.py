# SLidR: superpixel-driven InfoNCE (Sautier et al., CVPR 2022).
# minkunet34 student, frozen ImageNet MobileNetV2 teacher (stride 16): see the base for data and
# schedule.
_base_ = ['../_base_/pretrain/minkunet34_mobilenetv2-imagenet_2xb8-50e_nuscenes.py']
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
