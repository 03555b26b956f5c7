# The demo's sizes, in one place for its pretraining and downstream configs: a MinkUNet of width
# 16 with one block per stage, a frozen random ResNet-18 of width 16 (no weights are downloaded;
# random conv features still separate the world's colours and textures), 112x208 crops.
demo_student_backbone = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                             encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                             decoder_blocks=[1, 1, 1, 1])
demo_teacher_backbone = dict(depth=18, base_channels=16, stem_channels=16)
demo_teacher_channels = 128
demo_pretrain_pipeline = [
    dict(type='LoadLidarPoints', load_dim=5, use_dim=[0, 1, 2, 3]),
    dict(type='LoadMultiViewImagesAndSuperpixels'),
    dict(type='PointPixelPairing', min_depth=1.0),
    dict(type='PairedRandomResizedCrop', size=(112, 208), min_pairs_per_image=64, min_pairs=256),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation'),
    dict(type='PackImageLidarInputs'),
]
