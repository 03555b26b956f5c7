# PandaSet lidar segmentation (ScaLR's 17 classes, label 17 ignored; the table is
# PandaSetSegDataset.METAINFO's) for finetuning and linear probing, with the pipelines of the
# nuScenes base, on the files of tools/create_pandaset_infos.py (pandaset_layout.py). The
# lidar (Pandar64, PandarGT or both) is the one the out dir was converted for.
_base_ = ['./nuscenes_lidarseg.py', './pandaset_layout.py']
dataset_type = 'PandaSetSegDataset'
data_root = _base_.pandaset_root
data_prefix = _base_.pandaset_prefix
load = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=_base_.pandaset_load_dim,
         use_dim=_base_.pandaset_use_dim), _base_.load[1]
]
train_pipeline = load + _base_.train_pipeline[2:]
test_pipeline = load + _base_.test_pipeline[2:]
train_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file=_base_.pandaset_train_infos, data_prefix=data_prefix,
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 ann_file=_base_.pandaset_val_infos, data_prefix=data_prefix,
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
