"""Training-loop parts registered in mmdet3d's registries."""
from .finite_check_optim_wrapper import (FiniteCheckAmpOptimWrapper, FiniteCheckOptimWrapper,
                                         record_batch)
from .resumable_epoch_based_train_loop import ResumableEpochBasedTrainLoop

__all__ = [
    'ResumableEpochBasedTrainLoop', 'FiniteCheckOptimWrapper', 'FiniteCheckAmpOptimWrapper',
    'record_batch'
]
