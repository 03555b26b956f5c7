# SLidR's superpixel InfoNCE with a frozen DINOv2 ViT-B/14 teacher at the modern recipe (see the
# base).
_base_ = ['../_base_/pretrain/minkunet34-cyl_dinov2-vitb14_8xb4-100e_nuscenes.py']
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
