# SLidR's superpixel InfoNCE with a frozen DINOv3 ViT-B/16 teacher at the modern recipe (see the
# base).
_base_ = ['../_base_/pretrain/minkunet34-cyl_dinov3-vitb16_8xb4-100e_nuscenes.py']
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
