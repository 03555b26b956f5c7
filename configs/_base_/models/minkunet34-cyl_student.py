# The reference MinkUNet-34 student of SLidR / ST-SLidR: SLidR's cylindrical voxels with
# intensity-only input, and BatchNorm momentum 0.05 outside the residual blocks (SLidR's
# bn_momentum; its blocks keep torch's 0.1).
_base_ = ['./minkunet34_student.py', './slidr_cylindrical_voxels.py']
model = dict(data_preprocessor=_base_.slidr_voxelization,
             student=dict(bn_momentum=0.05, backbone=_base_.slidr_backbone))
