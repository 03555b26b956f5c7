# ST-SLidR as its reference code trains it (config/pretrain/nuscenes/slidr/
# stslidr_classbalance_moco.yaml): the reference pipeline (see the base), batch 16 = 2 GPUs x 8
# at the same lr 0.5 with synchronised BatchNorm (ST-SLidR converts to SyncBN on several GPUs;
# each GPU's loss keeps its own negatives), seed 2022, and the semantically tolerant loss
# (min_quantile 0.01, masked negatives as logit 0) with class-agnostic balancing (threshold 0.5).
_base_ = ['../_base_/pretrain/minkunet34-cyl_resnet50-mocov2_50e_nuscenes.py']
balancing = dict(type='ClassAgnosticBalancing', threshold=0.5)
model = dict(sync_bn=True,
             losses=dict(loss_st=dict(type='SemanticallyTolerantLoss', min_quantile=0.01,
                                      balancing=balancing)))
randomness = dict(seed=2022)
