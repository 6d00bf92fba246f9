"""The models this project trains: one module each, registering itself with its facts.

Adding a model is adding a module to this folder that calls `register(ModelInfo(...))`; its
name becomes a --model choice. This file imports no torch: the flags list the modules without
importing them, so --help stays instant.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


def last_linear_layer(model):
    """The final linear layer of a classifier: its input is the penultimate features."""
    from torch import nn

    return [module for module in model.modules() if isinstance(module, nn.Linear)][-1]


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of the project needs to know about a model.

    `build(spec, pretrained)` returns the module for the data `spec` describes;
    `embedding_layer(model)` is the layer whose input the end-of-run embeddings show.
{%- if cookiecutter.task == "image_classification" %}
    `cam_layer(model)` is the last block whose output is still a spatial feature map, which
    Grad-CAM explains (None: the model has none, and --cam-every is refused).
{%- endif %}
    """

    name: str
    task: str  # the tasks/ package whose batches it takes
    build: Callable
    embedding_layer: Callable = last_linear_layer
{%- if cookiecutter.task == "image_classification" %}
    cam_layer: Callable | None = None
{%- endif %}
    has_pretrained_weights: bool = False


REGISTERED: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> ModelInfo:
    REGISTERED[info.name] = info
    return info


def model_names() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def model_info(name: str) -> ModelInfo:
    importlib.import_module(f"{__name__}.{name}")
    if name not in REGISTERED:
        raise LookupError(f"models/{name}.py registers no ModelInfo named {name!r}")
    return REGISTERED[name]


def build_model(name: str, spec, pretrained: bool = False):
    return model_info(name).build(spec, pretrained)
