# Similarity baseline: 1 - cos(k, q) per superpixel, no negatives.
# cylinder3d student, frozen ResNet-50 (MoCo v2) teacher: see the base for data and schedule.
_base_ = ['../_base_/pretrain/cylinder3d_resnet50-mocov2_2xb8-50e_nuscenes.py']
model = dict(losses=dict(loss_sim=dict(type='SimilarityLoss')))
