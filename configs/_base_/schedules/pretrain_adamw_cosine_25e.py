# ScaLR's distillation schedule (configs/pretrain/WI_768_pretrain.yaml): AdamW lr 0.002, weight
# decay 0.03, a linear warm-up over 3,500 iterations and a cosine down to 1e-5 over 25 epochs,
# batch 8 in all.
_base_ = ['./pretrain_adamw_onecycle_100e.py']
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=0.002, weight_decay=0.03))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=3500),
    dict(type='CosineAnnealingLR', T_max=25, eta_min=1e-5, by_epoch=True,
         convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=25, val_interval=5)
auto_scale_lr = dict(base_batch_size=8)
