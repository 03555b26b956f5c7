# REAL-DATA CHECK pretraining, ST-SLidR: the semantically tolerant loss (quantile form) with
# class-agnostic balancing, on the SLidR real-data config.
_base_ = ['./slidr_minkunet-w16_mobilenetv2-imagenet_1xb2-10e_pandaset-sample.py']
model = dict(losses=dict(
    _delete_=True,
    loss_st=dict(type='SemanticallyTolerantLoss', tau=0.07, tolerance='quantile',
                 min_quantile=0.01, masked_negatives='zero_logit',
                 balancing=dict(type='ClassAgnosticBalancing', threshold=0.5))))
