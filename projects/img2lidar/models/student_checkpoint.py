"""Where a student's weights live in checkpoints: at the top level, as mmdet3d names them.

A pretraining checkpoint stores the student's parameters as ``backbone.*``, ``projection.*``
and (Cylinder3D) ``voxel_encoder.*``, exactly the names of mmdet3d's MinkUNet and Cylinder3D
segmentors, so that a segmentor loads the pretrained backbone without any conversion. Every
model that holds a student as ``self.student`` (the distiller, the zero-shot segmentor) uses
this one mechanism, :func:`register_student_layout`:

- saving: ``student.backbone.x`` is written as ``backbone.x``;
- loading: a top-level key whose first name is one of the student's (``backbone``, ...) goes
  back under ``student.``; keys of the model's other children stay; keys of ``foreign``
  children (parts of another model that are known and unused here, e.g. the teacher of a
  pretraining checkpoint read by the zero-shot segmentor) are left for the loader to report;
  any other key is an error that names it, never a silent move.

The other direction, a pretraining checkpoint into an mmdet3d segmentor, is
:class:`PretrainedStudentInit` (``init_cfg=dict(type='PretrainedStudent', checkpoint=...)``).
"""
import os
from functools import partial
from typing import Optional, Sequence, Tuple

from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from ..file_integrity import check_checkpoint_file


def student_names(model: nn.Module) -> Tuple[str, ...]:
    """Top-level names of the student's parameters and buffers (``backbone``, ...)."""
    return tuple(sorted({k.split('.', 1)[0] for k in model.student.state_dict()}))


def _flatten(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> dict:
    """State-dict hook: ``student.backbone.x`` -> ``backbone.x``."""
    head = prefix + 'student.'
    for key in [k for k in state_dict if k.startswith(head)]:
        state_dict[prefix + key[len(head):]] = state_dict.pop(key)
    return state_dict


def _nest(module: nn.Module, state_dict: dict, prefix: str, *args,
          foreign: Sequence[str] = ()) -> None:
    """Load pre-hook, the inverse of :func:`_flatten`, refusing unknown top-level keys."""
    student = set(student_names(module))
    children = {name for name, _ in module.named_children()} | {
        name for name, _ in module.named_parameters(recurse=False)} | {
        name for name, _ in module.named_buffers(recurse=False)}
    unknown = []
    for key in [k for k in state_dict if k.startswith(prefix)]:
        top = key[len(prefix):].split('.', 1)[0]
        if top in student:
            state_dict[prefix + 'student.' + key[len(prefix):]] = state_dict.pop(key)
        elif top not in children and top not in foreign:
            unknown.append(key)
    if unknown:
        raise KeyError(
            f'{type(module).__name__}: {len(unknown)} checkpoint keys belong neither to the '
            f'student (top-level names {sorted(student)}) nor to another part of the model '
            f'({sorted(children - {"student"})}), e.g. {unknown[:5]}; refusing to guess where '
            'they go')


def register_student_layout(model: nn.Module, foreign: Sequence[str] = ()) -> None:
    """Store ``model.student`` at the top level of ``model``'s state dict (see the module doc).

    Args:
        model (nn.Module): A model with a ``student`` child.
        foreign (Sequence[str]): Top-level names that may appear in checkpoints this model
            reads but that it does not have (left to the loader, which reports them as
            unexpected).
    """
    model._register_state_dict_hook(_flatten)
    model._register_load_state_dict_pre_hook(partial(_nest, foreign=tuple(foreign)),
                                             with_module=True)


@WEIGHT_INITIALIZERS.register_module(name='PretrainedStudent')
class PretrainedStudentInit:
    """``init_cfg=dict(type='PretrainedStudent', checkpoint=PATH)``: load a pretrained student
    into an mmdet3d segmentor, the one mechanism for every student.

    The parts the segmentor shares with the student (``backbone``, and ``voxel_encoder`` for
    Cylinder3D) are loaded strictly from the checkpoint's top-level keys: a part whose keys are
    missing is an error naming the checkpoint and the keys, never a silent random start. The
    checkpoint's other keys (projection, teacher, 2D head, losses) are not used. The loaded parts
    are marked initialised, so the segmentor's own initialisation does not overwrite them.

    Args:
        checkpoint (str): A pretraining checkpoint (or any checkpoint with those top-level
            keys, ``module.`` prefixes allowed).
        parts (Sequence[str], optional): The parts to load; the segmentor's children among
            ``voxel_encoder`` and ``backbone`` when None.
        map_location (str): Where the tensors are read to. Defaults to 'cpu'.
    """

    STUDENT_PARTS = ('voxel_encoder', 'backbone')

    def __init__(self, checkpoint: str, parts: Optional[Sequence[str]] = None,
                 map_location: str = 'cpu') -> None:
        self.checkpoint = checkpoint
        self.parts = None if parts is None else tuple(parts)
        self.map_location = map_location

    def __call__(self, module: nn.Module) -> None:
        from mmengine.logging import MMLogger
        from mmengine.runner.checkpoint import CheckpointLoader
        if os.path.isfile(self.checkpoint):  # torch.load checks no CRC: damage named here
            check_checkpoint_file(self.checkpoint)
        ckpt = CheckpointLoader.load_checkpoint(self.checkpoint, map_location=self.map_location)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
        children = dict(module.named_children())
        parts = self.parts or tuple(p for p in self.STUDENT_PARTS if p in children)
        if not parts:
            raise KeyError(f'{type(module).__name__} has none of the student parts '
                           f'{self.STUDENT_PARTS} to load from {self.checkpoint}')
        loaded = 0
        for part in parts:
            sub = children[part]
            given = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + '.')}
            missing = [k for k in sub.state_dict() if k not in given]
            if missing:
                raise KeyError(f'{self.checkpoint}: {len(missing)} keys of {part} are missing, '
                               f'e.g. {[part + "." + k for k in missing[:5]]} (expected a '
                               'pretraining checkpoint with the student at the top level)')
            result = sub.load_state_dict(given, strict=False)
            if result.unexpected_keys:
                raise KeyError(f'{self.checkpoint}: {part} does not have the keys '
                               f'{[part + "." + k for k in result.unexpected_keys[:5]]}')
            if hasattr(sub, '_is_init'):
                sub._is_init = True  # the segmentor's init_weights must not overwrite it
            loaded += len(given)
        MMLogger.get_current_instance().info(
            f'PretrainedStudent: {loaded} tensors of {", ".join(parts)} loaded from '
            f'{self.checkpoint}')

    def _get_init_info(self) -> str:
        return f'{self.__class__.__name__}: load {self.parts or "student parts"} from ' \
               f'{self.checkpoint}'


def student_weights(state_dict: dict,
                    parts: Sequence[str] = PretrainedStudentInit.STUDENT_PARTS) -> dict:
    """The tensors of a checkpoint's state dict that a segmentor loads as the pretrained student:
    the keys under ``parts`` (``voxel_encoder.*`` and ``backbone.*``, the names
    :class:`PretrainedStudentInit` reads), ``module.`` prefixes removed, in their order.

    Args:
        state_dict (dict): A checkpoint's ``state_dict`` (a pretraining checkpoint's holds the
            student at the top level, see the module doc).
        parts (Sequence[str]): Top-level names to keep. Defaults to
            :attr:`PretrainedStudentInit.STUDENT_PARTS`.

    Returns:
        dict: Key -> tensor, empty when the state dict holds no student.
    """
    out = {}
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.split('.', 1)[0] in parts:
            out[key] = value
    return out
