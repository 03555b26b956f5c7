# nuScenes and PandaSet together (mmengine's ConcatDataset): each dataset keeps its own data
# root, cameras (nuScenes' six; PandaSet the cameras of each info) and point files (nuScenes 5
# columns, PandaSet 6, see pandaset_layout.py), and both hand the student x, y, z, intensity
# (both intensities are 0-255), PandaSet's z shifted into nuScenes' height frame (road at
# z = -1.84 m in both; sensor_heights.py). The transforms after loading are the nuScenes
# base's. The metainfo of the info files differs between the two (nuScenes: version, split,
# scenes, and 'categories' in mmdet3d's own nuScenes infos; PandaSet: split, sequences, lidar,
# point columns) and nothing in pretraining reads it: ConcatDataset is told to ignore it.
_base_ = ['./nuscenes_pretrain.py', './pandaset_layout.py']
pandaset_load = [
    dict(type='LoadLidarPoints', load_dim=_base_.pandaset_load_dim,
         use_dim=_base_.pandaset_use_dim), *_base_.load[1:],
    dict(type='ShiftHeight', z_offset=_base_.pandaset_z_offset)
]
pandaset = dict(data_root=_base_.pandaset_root, data_prefix=_base_.pandaset_prefix, cameras=None)
info_metainfo_keys = ['version', 'split', 'scenes', 'categories', 'sequences', 'lidar',
                      'point_columns']
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=info_metainfo_keys,
        datasets=[
            _base_.train_dataloader.dataset,
            dict(_base_.train_dataloader.dataset, **pandaset,
                 ann_file=_base_.pandaset_train_infos,
                 pipeline=pandaset_load + _base_.train_pipeline[len(_base_.load):]),
        ]))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=info_metainfo_keys,
        datasets=[
            _base_.val_dataloader.dataset,
            dict(_base_.val_dataloader.dataset, **pandaset, ann_file=_base_.pandaset_val_infos,
                 pipeline=pandaset_load + _base_.val_pipeline[len(_base_.load):]),
        ]))
test_dataloader = val_dataloader
