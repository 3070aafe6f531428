"""Initial weights of a task learner from a user-supplied state dict (`train.init_weights`).

The file is read with ``torch.load(weights_only=True)``: no code is unpickled and nothing is
downloaded. It holds a state dict (parameter name -> tensor) in one of these layouts:

- ours: ``torch.save(model.state_dict(), path)`` of the same registered model;
- torchvision's, for `resnet18_imagenet` (``torchvision.models.resnet18``) and for `vgg16_bn`
  and `vgg16_bn_224` (``torchvision.models.vgg16_bn``): the same layers under other names;
- the released DRN-D's (fyu/drn, drn.py at commit d75db2e, ``drn_d_22`` and ``drn_d_38``) for
  `drn_d_22` and `drn_d_38`, whose dilations ours follow (`tavaal.models.drn`).

Every key of the model must be in the file with its shape, and no other key may be. Two kinds
of keys may be absent: the whole classifier (``classifier.*``: a body trained for other classes
initialises the network, and the classifier keeps its own initialisation) and batch norm's
``num_batches_tracked`` (checkpoints older than torch 0.4.1, the released DRN's among them,
lack it; it only counts updates). A foreign layout's classifier is never loaded: it is
ImageNet's 1000-class one, not the task's. Anything else is one ConfigError naming the file
and the keys that are missing, unexpected or of the wrong shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tavaal.errors import ConfigError
from tavaal.models.base import build_task_model
from tavaal.models.drn import DRN_BLOCKS, build_segmentation_model, list_segmentation_models
from tavaal.models.vgg import VGG16_BLOCKS

KEY = "train.init_weights"
HEAD = "classifier."
COUNTER = "num_batches_tracked"
# Mismatches of one kind named in full before the rest are only counted.
NAMED = 3

# A foreign key -> ours, or HEAD_DROPPED for the foreign classifier, or None when unknown.
Rename = Callable[[str], str | None]
HEAD_DROPPED = ""


@dataclass(frozen=True)
class Loaded:
    """What `load_initial_weights` did: the file's layout and the model's keys it left at
    their initialisation (the classifier when the file has none or a foreign one)."""

    layout: str
    kept_initialisation: tuple[str, ...]


def _torchvision_resnet(key: str) -> str | None:
    """torchvision's ResNet-18 names -> `tavaal.models.resnet.ResNet`'s."""
    if key.startswith("fc."):
        return HEAD_DROPPED
    if match := re.fullmatch(r"(conv1|bn1)\.(\w+)", key):
        return f"stem.{0 if match[1] == 'conv1' else 1}.{match[2]}"
    if match := re.fullmatch(r"layer([1-4])\.(\d+)\.(.+)", key):
        rest = match[3].replace("downsample.", "shortcut.", 1)
        return f"stages.{int(match[1]) - 1}.{match[2]}.{rest}"
    return None


def _torchvision_vgg_features() -> dict[int, str]:
    """torchvision's ``features`` index of each conv and batch norm of VGG16-BN -> ours: its
    features are one flat sequence (conv, BN, ReLU per layer, a max-pool after each block),
    ours one sequence per block (`tavaal.models.vgg.VGG`)."""
    names = {}
    index = 0
    for block, widths in enumerate(VGG16_BLOCKS):
        for layer in range(len(widths)):
            names[index] = f"blocks.{block}.{3 * layer}"
            names[index + 1] = f"blocks.{block}.{3 * layer + 1}"
            index += 3
        index += 1  # the block's max-pool
    return names


_VGG_FEATURES = _torchvision_vgg_features()
# torchvision's VGG classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear(classes);
# ours keeps the two hidden Linears at the same places in `hidden` (`TaskModel`).
_VGG_HIDDEN = {"0": "hidden.0", "3": "hidden.3"}


def _torchvision_vgg(key: str) -> str | None:
    """torchvision's VGG16-BN names -> `tavaal.models.vgg.VGG`'s."""
    if match := re.fullmatch(r"features\.(\d+)\.(\w+)", key):
        layer = _VGG_FEATURES.get(int(match[1]))
        return f"{layer}.{match[2]}" if layer else None
    if match := re.fullmatch(r"classifier\.(\d+)\.(\w+)", key):
        if match[1] == "6":
            return HEAD_DROPPED
        layer = _VGG_HIDDEN.get(match[1])
        return f"{layer}.{match[2]}" if layer else None
    return None


# The released DRN-D's levels (``layer0`` ... ``layer8``) -> the module holding them in ours:
# `DRN.groups` is (levels 0-2 and 3, level 4, levels 5-6, levels 7-8).
_DRN_LEVELS = {
    "0": "groups.0.0.0",
    "1": "groups.0.0.1",
    "2": "groups.0.0.2",
    "3": "groups.0.1",
    "4": "groups.1",
    "5": "groups.2.0",
    "6": "groups.2.1",
    "7": "groups.3.0",
    "8": "groups.3.1",
}


def _released_drn(key: str) -> str | None:
    """fyu/drn's DRN-D names -> `tavaal.models.drn.DRN`'s: levels 0-2 and 7-8 are
    (conv, BN, ReLU) sequences in both, levels 3-6 BasicBlocks whose projection is called
    ``downsample`` there and ``shortcut`` here; ``fc`` is the ImageNet classifier (a 1x1 conv)."""
    if key.startswith("fc."):
        return HEAD_DROPPED
    if match := re.fullmatch(r"layer(\d)\.(.+)", key):
        level = _DRN_LEVELS.get(match[1])
        return f"{level}.{match[2].replace('downsample.', 'shortcut.', 1)}" if level else None
    return None


# Registered model -> (the foreign layout's name, its renaming).
FOREIGN_LAYOUTS: dict[str, tuple[str, Rename]] = {
    "resnet18_imagenet": ("torchvision resnet18", _torchvision_resnet),
    "vgg16_bn": ("torchvision vgg16_bn", _torchvision_vgg),
    "vgg16_bn_224": ("torchvision vgg16_bn", _torchvision_vgg),
    **{f"drn_{variant}": (f"fyu/drn drn_{variant}", _released_drn) for variant in DRN_BLOCKS},
}


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in `path`, read without running code; a ConfigError naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{KEY}: {path}: file not found") from None
    except Exception as exc:
        raise ConfigError(f"{KEY}: {path}: not a readable state dict ({exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            f"{KEY}: {path}: expected a state dict (parameter name -> tensor), got "
            f"{type(state).__name__}; save one with torch.save(model.state_dict(), path)"
        )
    return state


def _to_our_names(
    state: dict[str, Tensor], model_name: str, ours: set[str]
) -> tuple[str, dict[str, Tensor], dict[str, str]]:
    """(layout, the state under our names without a foreign classifier, our name -> the file's
    name). A file sharing no key with the model is read in the model's foreign layout, if any;
    keys that layout does not know stay as they are (and are reported unexpected)."""
    foreign = FOREIGN_LAYOUTS.get(model_name)
    if foreign is None or ours & set(state):
        return "tavaal", state, {}
    layout, rename = foreign
    renamed: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    for key, value in state.items():
        target = rename(key)
        if target == HEAD_DROPPED:
            continue
        target = target or key
        renamed[target] = value
        source[target] = key
    return layout, renamed, source


def _named(keys: list[str], render: Callable[[str], str]) -> str:
    shown = ", ".join(render(k) for k in keys[:NAMED])
    return shown + (f" and {len(keys) - NAMED} more" if len(keys) > NAMED else "")


def match_state_dict(
    model: nn.Module,
    model_name: str,
    state: dict[str, Tensor],
    path: str | Path,
    classes_known: bool = True,
) -> tuple[str, dict[str, Tensor]]:
    """(layout, the file's tensors under the model's names), or one ConfigError naming `path`
    and every kind of mismatch. Without `classes_known` (before the dataset is prepared) the
    classifier's first axis, the number of classes, is not compared."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    layout, state, source = _to_our_names(state, model_name, set(expected))

    def render(key: str) -> str:
        return f"'{source[key]}' (ours '{key}')" if key in source else f"'{key}'"

    # The classifier is all there or all absent.
    head_given = any(k.startswith(HEAD) for k in state if k in expected)
    missing = [
        k
        for k in expected
        if k not in state and (head_given or not k.startswith(HEAD)) and COUNTER not in k
    ]
    unexpected = [k for k in state if k not in expected]
    wrong = []
    for key, shape in expected.items():
        if key not in state:
            continue
        found = tuple(state[key].shape)
        if classes_known or not key.startswith(HEAD):
            if found != shape:
                wrong.append(f"{render(key)} has shape {found}, the model expects {shape}")
        elif found[1:] != shape[1:] or len(found) != len(shape):
            # The classifier's first axis is the number of classes, not yet known.
            expects = "(classes" + "".join(f", {size}" for size in shape[1:]) + ")"
            wrong.append(f"{render(key)} has shape {found}, the model expects {expects}")
    problems = []
    if missing:
        problems.append(f"missing {_named(missing, render)}")
    if unexpected:
        problems.append(f"unexpected {_named(unexpected, render)}")
    if wrong:
        problems.append(_named(wrong, str))
    if problems:
        raise ConfigError(
            f"{KEY}: {path} ({layout} layout) does not fit {model_name}: " + "; ".join(problems)
        )
    return layout, state


def load_initial_weights(model: nn.Module, model_name: str, path: str | Path) -> Loaded:
    """Load the state dict in `path` into `model` (the registered `model_name`), checked."""
    layout, state = match_state_dict(model, model_name, read_state_dict(path), path)
    model.load_state_dict(state, strict=False)
    kept = tuple(k for k in model.state_dict() if k not in state and COUNTER not in k)
    return Loaded(layout=layout, kept_initialisation=kept)


def check_initial_weights(
    model_name: str, input_shape: tuple[int, ...], path: str | Path, num_classes: int | None
) -> str:
    """Before any job: the file is a state dict that fits `model_name` on inputs of
    `input_shape` (its classifier's number of classes too, when `num_classes` is known).
    The model is built on torch's meta device: nothing is allocated. Returns the layout."""
    build = (
        build_segmentation_model if model_name in list_segmentation_models() else build_task_model
    )
    with torch.device("meta"):
        model = build(model_name, input_shape, num_classes or 1)
    layout, _ = match_state_dict(
        model, model_name, read_state_dict(path), path, classes_known=num_classes is not None
    )
    return layout
