# DEMO pretraining (relational loss): the ST-SLidR demo config with the relational losses of
# configs/relational. The relational terms are weighted 0.1 on the demo: with weights 1 the
# structure of the random teacher's nearly uniform features (all cosines high) pulls the
# student into collapse before InfoNCE separates it (measured: probe mIoU 9.7 at 1/1, 29.5 at
# 0.1/0.1).
_base_ = ['./stslidr_minkunet-w16_mobilenetv2-imagenet_1xb2-6e_demo.py']
model = dict(losses=dict(
    _delete_=True,
    loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07),
    loss_rel=dict(type='RelationalLoss', lambda_cross=0.1, lambda_intra=0.1, detach_q=True)))
