# Relational distillation (cross- and intra-modal terms, the 2D side as the teacher) on top of
# SLidR's InfoNCE, with a frozen DINOv3 ViT-B/16 teacher at the modern recipe.
_base_ = ['../_base_/pretrain/minkunet34-cyl_dinov3-vitb16_8xb4-100e_nuscenes.py']
relational = dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0, detach_q=True)
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss'), loss_rel=relational))
