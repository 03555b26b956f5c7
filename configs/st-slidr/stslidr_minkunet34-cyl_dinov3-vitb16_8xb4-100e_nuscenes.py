# ST-SLidR (tolerant loss with class-agnostic balancing) with a frozen DINOv3 ViT-B/16 teacher at
# the modern recipe: the semantic similarity and the balancing votes come from the teacher's pooled
# patch tokens (negative cosines clipped to 0).
_base_ = ['../_base_/pretrain/minkunet34-cyl_dinov3-vitb16_8xb4-100e_nuscenes.py']
balancing = dict(type='ClassAgnosticBalancing', threshold=0.5)
model = dict(losses=dict(loss_st=dict(type='SemanticallyTolerantLoss', min_quantile=0.01,
                                      balancing=balancing)))
