default_scope = 'mmdet3d'
custom_imports = dict(imports=['projects.img2lidar'], allow_failed_imports=False)
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # before the first iteration: every file the train and val datasets read exists (a stat;
    # projects/img2lidar/engine/data_files_check_hook.py). Files in object storage:
    # --cfg-options default_hooks.data_files.skip=True
    data_files=dict(type='DataFilesCheckHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
