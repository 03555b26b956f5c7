# A linear probe on PandaSet (ScaLR's 17 classes; tools/create_pandaset_infos.py with the train
# and val sequence lists of the README, e.g. ScaLR's latitude split), through mmdet3d's
# MinkUNet-34 segmentor with the pretrained backbone frozen. Evaluate with
#   python tools/evaluate_pretraining.py CHECKPOINT --protocol pandaset [--launcher pytorch --gpus 2]
# The real-data check on the 10-frame PandaSet sample (tools/real_data_check.py) probes frozen
# features directly instead, to report points inside and outside the camera and the teacher's
# own features as a bound.
description = 'Linear probe on PandaSet (MinkUNet-34, cartesian voxels, ScaLR classes)'
seeds = 3
checkpoint_option = 'model.init_cfg.checkpoint'
random_init_options = ['model.init_cfg=None']
runs = [
    dict(name='linear-probe',
         config='configs/linear_probe/minkunet34_linear-probe_2xb8-100e_pandaset.py',
         mode='train',
         pinned=dict(head_lr=0.05, epochs=100, batch=16, split=dict(
             definition='the train and val sequences converted into pandaset_infos_{train,val}.pkl',
             config={'train_dataloader.dataset.ann_file': 'pandaset_infos_train.pkl'}))),
]
