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
"""
from functools import partial
from typing import Sequence, Tuple

from torch import nn


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
