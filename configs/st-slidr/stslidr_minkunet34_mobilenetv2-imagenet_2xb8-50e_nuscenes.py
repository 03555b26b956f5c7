# ST-SLidR: semantically tolerant contrastive loss (quantile form, min_quantile 0.01,
# masked negatives as logit 0 like the reference) with class-agnostic balancing
# (Mahmoud et al., CVPR 2023).
# minkunet34 student, frozen ImageNet MobileNetV2 teacher (stride 16): see the base for data and
# schedule.
_base_ = ['../_base_/pretrain/minkunet34_mobilenetv2-imagenet_2xb8-50e_nuscenes.py']
model = dict(losses=dict(loss_st=dict(
    type='SemanticallyTolerantLoss', tau=0.07, tolerance='quantile', min_quantile=0.01,
    masked_negatives='zero_logit', balancing=dict(type='ClassAgnosticBalancing', threshold=0.5))))
