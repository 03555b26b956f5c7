# REAL-DATA CHECK pretraining, similarity: 1 - cos(k, q) per superpixel (no negatives), on the
# SLidR real-data config.
_base_ = ['./slidr_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py']
model = dict(losses=dict(_delete_=True, loss_sim=dict(type='SimilarityLoss')))
