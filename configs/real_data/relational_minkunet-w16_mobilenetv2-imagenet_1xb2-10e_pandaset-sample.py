# REAL-DATA CHECK pretraining, relational: InfoNCE plus the cross- and intra-modal relational
# terms (weights 1, as configs/relational), on the SLidR real-data config.
_base_ = ['./slidr_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py']
model = dict(losses=dict(
    loss_rel=dict(type='RelationalLoss', lambda_cross=1.0, lambda_intra=1.0, detach_q=True)))
