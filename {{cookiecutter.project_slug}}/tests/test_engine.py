import logging

import torch

from conftest import QUICK
from {{ cookiecutter.project_slug }}.config import parse_config
from {{ cookiecutter.project_slug }}.engine import Progress, train_one_epoch
from {{ cookiecutter.project_slug }}.runtime import Runtime
from {{ cookiecutter.project_slug }}.trainer import build_training

PLAIN_SGD = ["--optimizer", "sgd", "--momentum", "0", "--weight-decay", "0", "--lr", "0.1"]
PLAIN_SGD += ["--scheduler", "constant", "--accum-steps", "2"]


def batches(count: int) -> list:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(8, 3, 8, 8, generator=generator),
            torch.randint(0, 10, (8,), generator=generator),
        )
        for _ in range(count)
    ]


def weights_after(*epochs: tuple[list, int]) -> dict:
    """Train one epoch per (batches, accum_steps) from the same start; return the weights."""
    config = parse_config([*QUICK, *PLAIN_SGD])
    torch.manual_seed(0)
    runtime = Runtime(torch.device("cpu"))
    training = build_training(config, runtime, logging.getLogger("test"))
    torch.manual_seed(1)
    for loader, accum_steps in epochs:
        training.optimisation.accum_steps = accum_steps
        train_one_epoch(
            training.model,
            loader,
            training.optimisation,
            Progress(),
            runtime,
            log_every=100,
            log_step=lambda values, step: None,
            show_progress=False,
        )
    return training.model.state_dict()


def test_short_last_accumulation_group_weighs_like_a_full_batch():
    a, b, c = batches(3)
    # Three micro-batches with --accum-steps 2: updates over (a, b) and over c alone.
    together = weights_after(([a, b, c], 2))
    # The same updates, the last one made from c as an ordinary batch of its own.
    apart = weights_after(([a, b], 2), ([c], 1))
    assert all(torch.equal(together[key], apart[key]) for key in together)
