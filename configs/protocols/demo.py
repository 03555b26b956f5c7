# The demo world's downstream evaluation (tools/demo.sh): a linear probe on all 6 train scenes
# and a few-shot finetune on one of them, both validated on the 2 validation scenes, from a
# demo pretraining checkpoint or from random weights. One seed by default (DEMO_SEEDS=3 in
# tools/demo.sh, or --seeds 3). Data root other than data/demo/: --cfg-options
# {train,val,test}_dataloader.dataset.data_root=DIR/
description = ("The demo world's evaluation: linear probe on its 6 train scenes, few-shot "
               'finetune on 1 of them; SegMetric on its 2 validation scenes')
seeds = 1
checkpoint_option = 'model.init_cfg.checkpoint'
random_init_options = ['model.init_cfg=None']
runs = [
    dict(name='linear-probe',
         title='linear probe',
         config='configs/demo/minkunet-w16_linear-probe_1xb2-6e_demo.py',
         mode='train',
         pinned=dict(head_lr=0.05, epochs=6, batch=2, split=dict(
             definition='the 6 train scenes of the demo world',
             config={'train_dataloader.dataset.few_shot': None}))),
    dict(name='few-shot',
         title='few-shot finetune',
         config='configs/demo/minkunet-w16_1xb2-30e_demo-fewshot.py',
         mode='train',
         pinned=dict(lr=0.02, head_lr=2.0, epochs=30, batch=2, split=dict(
             definition='the 4th of the 6 train scenes in scene-table order (every 4th)',
             config={'train_dataloader.dataset.few_shot': 25}))),
]
