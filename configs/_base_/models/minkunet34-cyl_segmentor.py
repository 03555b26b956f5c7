# The MinkUNet segmentor for a backbone pretrained by the reference configs: the same
# cylindrical voxels and intensity-only input as in pretraining.
_base_ = ['./minkunet34_segmentor.py', './slidr_cylindrical_voxels.py']
pretrained = 'work_dirs/stslidr_minkunet34-cyl_resnet50-mocov2_2xb8-50e_nuscenes/epoch_50.pth'
model = dict(data_preprocessor=_base_.slidr_voxelization, backbone=_base_.slidr_backbone,
             init_cfg=dict(checkpoint=pretrained))
