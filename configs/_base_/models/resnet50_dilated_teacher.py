# Frozen ResNet-50 teacher with its last three stages dilated (output stride 4, 2048 channels;
# it normalises its input with ImageNet's statistics) and the trainable 2D head (1x1 conv to
# D = 64, bilinear upsampling, L2 norm). A pretraining base wires ``teacher_model`` into its
# distiller (configs/_base_/pretrain).
# Weights: a local file in mmdet ResNet keys; convert a MoCo v2 / SwAV / DINO / OBoW release with
#   python tools/convert_teacher_checkpoint.py moco_v2_800ep_pretrain.pth.tar \
#       checkpoints/resnet50_mocov2.pth
teacher_model = dict(
    teacher=dict(
        type='FrozenImageTeacher',
        checkpoint='checkpoints/resnet50_mocov2.pth',
        backbone=dict(
            type='mmdet.ResNet',
            depth=50,
            num_stages=4,
            out_indices=(3, ),
            strides=(1, 1, 1, 1),
            dilations=(1, 2, 4, 8),
            norm_cfg=dict(type='BN', requires_grad=False),
            norm_eval=True,
            style='pytorch')),
    image_head=dict(type='ImageProjectionHead', in_channels=2048, out_channels=64))
