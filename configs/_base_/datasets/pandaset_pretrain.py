# PandaSet image-to-lidar pretraining data (tools/create_pandaset_infos.py, pandaset_layout.py)
# with SLIC superpixels (tools/create_superpixels.py --img-prefix 'camera/{cam}') and the
# nuScenes base's transforms, z shifted into nuScenes' height frame (pandaset_layout.py) right
# after the pairing, so that the pairs are those of the stored points. Every sample uses the
# cameras of its own info (cameras=None): all six of the rig where the images are there.
_base_ = ['./nuscenes_pretrain.py', './pandaset_layout.py']
data_root = _base_.pandaset_root
cameras = None
data_prefix = _base_.pandaset_prefix
load = [
    dict(type='LoadLidarPoints', load_dim=_base_.pandaset_load_dim,
         use_dim=_base_.pandaset_use_dim), *_base_.load[1:],
    dict(type='ShiftHeight', z_offset=_base_.pandaset_z_offset)
]
train_pipeline = load + _base_.train_pipeline[len(_base_.load):]
val_pipeline = load + _base_.val_pipeline[len(_base_.load):]
train_dataloader = dict(
    dataset=dict(_base_.train_dataloader.dataset, _delete_=True, data_root=data_root,
                 ann_file=_base_.pandaset_train_infos, data_prefix=data_prefix, cameras=cameras,
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(_base_.val_dataloader.dataset, _delete_=True, data_root=data_root,
                 ann_file=_base_.pandaset_val_infos, data_prefix=data_prefix, cameras=cameras,
                 pipeline=val_pipeline))
test_dataloader = val_dataloader
