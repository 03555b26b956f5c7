# PandaSet as tools/create_pandaset_infos.py writes it (one --out-dir per lidar choice): the
# facts that pandaset_seg.py, pandaset_pretrain.py and the configs mixing PandaSet with nuScenes
# share, in one place. Point files hold 6 float32 columns (POINT_COLUMNS of
# projects/img2lidar/preparation/pandaset_infos.py): x, y, z in the Pandar64 ego frame,
# intensity (0-255), lidar id (0 Pandar64, 1 PandarGT) and time offset (s); the student reads
# x, y, z, intensity, as from nuScenes. Their ego frame's origin lies near the road: every
# PandaSet pipeline shifts z by pandaset_z_offset (ShiftHeight, after the pairing in
# pretraining, after loading in segmentation) into the common height frame of
# ./sensor_heights.py, nuScenes' (road at z = -1.84 m).
_base_ = ['./sensor_heights.py']
pandaset_root = 'data/pandaset_converted/'
pandaset_cameras = ['front_camera', 'front_left_camera', 'front_right_camera', 'left_camera',
                    'right_camera', 'back_camera']
pandaset_prefix = dict(pts='points', pts_semantic_mask='labels', sp='superpixels',
                       **{cam: f'camera/{cam}' for cam in pandaset_cameras})
pandaset_load_dim = 6
pandaset_use_dim = [0, 1, 2, 3]
pandaset_train_infos = 'pandaset_infos_train.pkl'
pandaset_val_infos = 'pandaset_infos_val.pkl'
pandaset_z_offset = _base_.pandaset_origin_height - _base_.reference_origin_height  # -1.62
