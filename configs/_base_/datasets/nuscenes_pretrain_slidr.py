# SLidR's pretraining pipeline (utils/transforms.py, pretrain/dataloader_nuscenes.py): the cloud
# transforms first (rotation about z, x and y flips, and DropCuboids: one cuboid of up to 20% of
# the cloud's extent, kept only if every image keeps 1,024 pairs), then the random resized crop
# (redrawn until it keeps more than 1,024 pairs or 75% of them) and the horizontal flip; images
# decoded at full resolution (no reduced JPEG decoding), the last incomplete batch dropped.
_base_ = ['./nuscenes_pretrain.py']
decode_scale = 1
load = [_base_.load[0], dict(_base_.load[1], decode_scale=decode_scale), _base_.load[2]]
train_pipeline = load + [
    dict(type='PairedCloudAugmentation', rotation=True, flip_x_prob=0.5, flip_y_prob=0.5,
         cuboid_drop=dict(num=1, extent_fraction=0.2, max_tries=1, min_pairs_per_image=1024,
                          relax_for_small_images=False)),
    dict(type='PairedRandomResizedCrop', size=(224, 416), scale=(0.3, 1.0),
         ratio=(14 / 9, 17 / 9), max_tries=100, min_pairs_per_image=1025,
         min_pairs_fraction=0.75, min_pairs=1),
    dict(type='PairedRandomFlip', prob=0.5),
    dict(type='PackImageLidarInputs'),
]
train_dataloader = dict(drop_last=True, dataset=dict(pipeline=train_pipeline))
