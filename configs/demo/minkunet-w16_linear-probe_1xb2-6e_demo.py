# DEMO linear probing: the demo backbone frozen (eval mode), only the linear classifier
# trained on all demo train scenes, evaluated with SegMetric on the demo validation scenes.
_base_ = ['./minkunet-w16_1xb2-30e_demo-fewshot.py']
model = dict(type='LinearProbeMinkUNet')
train_dataloader = dict(dataset=dict(few_shot=None))
optim_wrapper = dict(optimizer=dict(lr=0.05), paramwise_cfg=dict(_delete_=True))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=6, by_epoch=True, eta_min=0)]
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6))
