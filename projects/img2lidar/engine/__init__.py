"""Runner parts registered in mmdet3d's registries: the training loop, optimizer wrappers and
the test-time bird's-eye-view hook."""
from .bev_seg_visualization_hook import BEVSegVisualizationHook
from .data_files_check_hook import DataFilesCheckHook, MissingDataFilesError
from .finite_check_optim_wrapper import (FiniteCheckAmpOptimWrapper, FiniteCheckOptimWrapper,
                                         record_batch)
from .resumable_epoch_based_train_loop import ResumableEpochBasedTrainLoop

__all__ = [
    'ResumableEpochBasedTrainLoop', 'FiniteCheckOptimWrapper', 'FiniteCheckAmpOptimWrapper',
    'record_batch', 'BEVSegVisualizationHook', 'DataFilesCheckHook',
    'MissingDataFilesError'
]
