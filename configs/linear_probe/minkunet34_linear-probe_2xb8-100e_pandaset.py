# Linear probing: the pretrained minkunet34 feature extractor frozen and kept in eval mode,
# only the linear classifier trained (lr 0.05) on the PandaSet train sequences.
_base_ = ['../finetune/minkunet34_2xb8-100e_pandaset.py']
model = dict(type='LinearProbeMinkUNet')
optim_wrapper = dict(
    optimizer=dict(lr=0.05),
    paramwise_cfg=dict(_delete_=True))
