from dataclasses import replace

import pytest
import torch
from torch import nn

from {{ cookiecutter.project_slug }}.config.schema import INIT_SCHEMES
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from {{ cookiecutter.project_slug }}.models import build_model, model_names
from {{ cookiecutter.project_slug }}.models.simple_cnn import downsampling_steps
from {{ cookiecutter.project_slug }}.training.model_setup import initialise_weights
from {{ cookiecutter.project_slug }}.training.optimisation import WarmupSchedule, parameter_groups

SPEC = DataSpec(tuple("abc"), 3, 16, IMAGENET_MEAN, IMAGENET_STD, resize_size=16)


@pytest.mark.parametrize("name", model_names())
def test_models_give_one_logit_per_class(name):
    model = build_model(name, SPEC).eval()
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize("size", [8, 32, 33, 64, 128, 224])
def test_simple_cnn_downsamples_photos_to_32_px_first(size):
    model = build_model("simple_cnn", replace(SPEC, image_size=size)).eval()
    stem = model.features[: downsampling_steps(size)]
    with torch.no_grad():
        assert stem(torch.rand(1, 3, size, size)).shape[-1] <= 32
        assert model(torch.rand(2, 3, size, size)).shape == (2, 3)


@pytest.mark.parametrize("scheme", [scheme for scheme in INIT_SCHEMES if scheme != "default"])
def test_init_schemes_set_norms_and_biases(scheme):
    torch.manual_seed(0)
    model = build_model("resnet18", SPEC)
    before = model.fc.weight.clone()
    initialise_weights(model, scheme)
    assert not torch.equal(before, model.fc.weight)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
        if isinstance(module, nn.Linear):
            assert torch.all(module.bias == 0)


def test_kaiming_uses_fan_out_for_convs():
    conv = build_model("simple_cnn", SPEC).features[0][0]
    initialise_weights(conv, "kaiming_normal")
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.03


def test_no_weight_decay_on_biases_and_norms():
    decay, no_decay = parameter_groups(build_model("simple_cnn", SPEC), 0.1)
    assert all(parameter.ndim > 1 for parameter in decay["params"])
    assert all(parameter.ndim == 1 for parameter in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0


def test_warmup_then_cosine_values():
    schedule = WarmupSchedule(4, 12, "cosine", 4, 1, 0.1, min_factor=0.0)
    assert [schedule(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(8) == pytest.approx(0.5)
    assert schedule(12) == pytest.approx(0.0)


def test_step_and_constant_schedules():
    step = WarmupSchedule(0, 30, "step", 5, 2, 0.1, 0.0)
    assert [step(s) for s in (0, 9, 10, 19, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert WarmupSchedule(2, 10, "constant", 5, 1, 0.1, 0.0)(7) == 1.0
