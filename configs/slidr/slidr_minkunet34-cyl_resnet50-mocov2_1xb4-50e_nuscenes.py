# SLidR as its reference code trains the released model (config/slidr_minkunet.yaml): the
# reference pipeline (see the base) with a batch of 4 on 1 GPU and the superpixel InfoNCE.
_base_ = ['../_base_/pretrain/minkunet34-cyl_resnet50-mocov2_50e_nuscenes.py']
train_dataloader = dict(batch_size=4)
model = dict(losses=dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)))
auto_scale_lr = dict(base_batch_size=4)
