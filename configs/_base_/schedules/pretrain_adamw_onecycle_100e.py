# SuperFlow's / LiMoE's pretraining schedule (configs/_base_/schedules/pretrain.py of their
# releases): AdamW lr 0.01 (betas 0.9 / 0.999, weight decay 0.01, eps 1e-6), a one-cycle
# schedule over 100 epochs stepped per iteration (20% warm-up from lr / 25, down to
# lr / 25 / 100), batch 32 = 8 GPUs x 4. The loops and the mid-epoch checkpoint come from the
# SLidR schedule.
_base_ = ['./pretrain_sgd_50e.py']
lr = 0.01
optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=lr, betas=(0.9, 0.999),
                                    weight_decay=0.01, eps=1e-6))
param_scheduler = [
    dict(type='OneCycleLR', eta_max=lr, total_steps=100, pct_start=0.2, div_factor=25.0,
         final_div_factor=100.0, by_epoch=True, convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=100, val_interval=10)
auto_scale_lr = dict(base_batch_size=32)
