"""The loss variants of ST-SLidR's ablation, and the config that swaps them into a base config.

One place for what "SLidR", "ST", "CB", "ST + CB" (and its nearest-pooling and adaptive
variants) mean as losses, so that the demo ablation (``tools/ablate_stslidr.py``) and the
real-data check (``tools/real_data_check.py --methods``) pretrain the same things. A variant
is the base config with its ``model.losses`` replaced (and, for the nearest variant,
``model.teacher_pooling``); everything else stays the base's.
"""
from typing import Dict, NamedTuple, Optional

#: ST-SLidR's class-agnostic balancing as released: a fixed vote threshold
CB = dict(type='ClassAgnosticBalancing', threshold=0.5)
#: CB's vote threshold adapted to the teacher: the batch's 0.8 quantile of the similarities (the
#: top 20 % of pairs vote: about the share of same-class superpixel pairs in driving scenes);
#: ST's threshold is a per-anchor quantile already
CB_ADAPTIVE = dict(type='ClassAgnosticBalancing', threshold_quantile=0.8)
#: ST-SLidR's semantically tolerant loss as released (quantile form)
ST = dict(type='SemanticallyTolerantLoss', tau=0.07, tolerance='quantile', min_quantile=0.01,
          masked_negatives='zero_logit')


class LossVariant(NamedTuple):
    """One row of the ablation.

    Attributes:
        label (str): Its name in tables.
        losses (dict): ``model.losses`` (name -> loss config).
        model (dict): Other ``model`` options it sets.
    """
    label: str
    losses: dict
    model: dict


LOSS_VARIANTS: Dict[str, LossVariant] = {
    'slidr': LossVariant('SLidR', dict(loss_slidr=dict(type='SuperpixelInfoNCELoss', tau=0.07)),
                         {}),
    'st': LossVariant('ST', dict(loss_st=dict(ST)), {}),
    'cb': LossVariant('CB', dict(loss_cb=dict(type='SuperpixelInfoNCELoss', tau=0.07,
                                              balancing=CB)), {}),
    'st_cb': LossVariant('ST + CB', dict(loss_st=dict(ST, balancing=CB)), {}),
    'st_cb_nearest': LossVariant('ST + CB (nearest)', dict(loss_st=dict(ST, balancing=CB)),
                                 dict(teacher_pooling='nearest')),
    'st_cb_adaptive': LossVariant('ST + CB (adaptive)',
                                  dict(loss_st=dict(ST, balancing=CB_ADAPTIVE)), {}),
    'cb_adaptive': LossVariant('CB (adaptive)', dict(loss_cb=dict(
        type='SuperpixelInfoNCELoss', tau=0.07, balancing=CB_ADAPTIVE)), {}),
}


def variant_config_text(name: str, base_config: str, diagnostics_interval: int = 0,
                        random_teacher: bool = False, note: Optional[str] = None) -> str:
    """The text of a config: ``base_config`` with the losses of variant ``name``.

    Args:
        name (str): A key of :data:`LOSS_VARIANTS`.
        base_config (str): The config it inherits (an absolute path).
        diagnostics_interval (int): The losses' ``diagnostics_interval`` (0: not set).
        random_teacher (bool): A randomly initialised teacher (``teacher.checkpoint=None``).
        note (str, optional): The first comment line (what generated it).

    Returns:
        str: The config file's text.
    """
    variant = LOSS_VARIANTS[name]
    losses = {k: dict(v, diagnostics_interval=diagnostics_interval) if diagnostics_interval
              else dict(v) for k, v in variant.losses.items()}
    model = dict(variant.model, losses=dict(_delete_=True, **losses))
    if random_teacher:
        model['teacher'] = dict(checkpoint=None)
    lines = [f'# {variant.label}' + (f': {note}' if note else ''),
             f'_base_ = [{base_config!r}]', f'model = {model!r}']
    return '\n'.join(lines) + '\n'
