# The modern recipe's images (SuperFlow, LiMoE, ScaLR): every camera image resized whole to
# 224x448 (its nuScenes aspect ratio, no random crop; 16 x 32 patches of 14 px), a horizontal
# flip, and the cloud's rotation and flips.
_base_ = ['./nuscenes_pretrain.py']
resize = dict(type='PairedRandomResizedCrop', size=(224, 448), scale=(1.0, 1.0),
              ratio=(16 / 9, 16 / 9), min_pairs_per_image=1, min_pairs=1,
              align=_base_.decode_scale)
train_pipeline = _base_.load + [
    resize,
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PairedCloudAugmentation', rotation=True, flip_x_prob=0.5, flip_y_prob=0.5),
    dict(type='PackImageLidarInputs'),
]
val_pipeline = _base_.load + [resize, dict(type='PackImageLidarInputs')]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
