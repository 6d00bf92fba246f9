import logging

import torch
from torch import nn

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.spec import DataSpec
from {{ cookiecutter.project_slug }}.loggers.base import LOGGER_TYPES, RunLogger
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.runs.runtime import Runtime
from {{ cookiecutter.project_slug }}.tasks import build_task
from {{ cookiecutter.project_slug }}.training.fit import build_training
from {{ cookiecutter.project_slug }}.training.hooks import HOOK_TYPES, TrainingHook
from {{ cookiecutter.project_slug }}.training.loop import Progress, train_one_epoch
from {{ cookiecutter.project_slug }}.training.validation import score

from conftest import QUICK

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
        training.progress = Progress()
        train_one_epoch(
            training.model,
            loader,
            training,
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


def always_predicts(label: int, num_classes: int) -> nn.Module:
    """A model whose logits favour `label` whatever the image."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))
    nn.init.zeros_(model[1].weight)
    with torch.no_grad():
        model[1].bias.copy_(torch.arange(num_classes) == label)
    return model


def scores(model: nn.Module, targets: list[int], num_classes: int) -> dict:
    loader = [(torch.zeros(len(targets), 3, 8, 8), torch.tensor(targets))]
    spec = DataSpec(tuple(map(str, range(num_classes))), 3, 8, (0.5,) * 3, (0.5,) * 3, 8)
    cpu = torch.device("cpu")
    task = build_task("image_classification", parse_config(QUICK), spec, None, cpu)
    return score(model, loader, task, cpu, keep_predictions=True)


def test_a_class_without_validation_images_has_no_accuracy_rather_than_zero():
    results = scores(always_predicts(0, 3), [0, 0, 2], 3)
    assert results["per_class_acc"] == [1.0, None, 0.0]
    assert results["confusion_matrix"].tolist() == [[2, 0, 0], [0, 0, 0], [1, 0, 0]]


def test_a_one_image_split_keeps_its_predictions_per_image():
    results = scores(always_predicts(1, 4), [1], 4)
    assert results["targets"].shape == (1,) and results["probabilities"].shape == (1, 4)
    assert results["per_class_acc"] == [None, 1.0, None, None]
    assert results["val_acc"] == 1.0


def test_each_epoch_is_saved_before_its_figures_and_after_its_record(train):
    """A stop signal arriving while an epoch's figures are drawn must not lose the epoch; the
    record (metrics.jsonl) comes first, as a resume trims it back to the checkpoint."""
    seen = []

    class CheckpointWatcher(RunLogger):
        def __init__(self, run_dir, config, spec, resumed) -> None:
            self.last = run_dir / "last.pt"

        def saved_epoch(self) -> int:
            return load_checkpoint(self.last)["epoch"] if self.last.exists() else 0

        def log_epoch(self, record, step, model) -> None:
            seen.append(("record", self.saved_epoch()))

        def log_validation(self, results, step) -> None:
            seen.append(("figures", self.saved_epoch()))

    LOGGER_TYPES.append(CheckpointWatcher)
    try:
        train()
    finally:
        LOGGER_TYPES.remove(CheckpointWatcher)
    assert seen == [("record", 0), ("figures", 1)]


def test_training_hooks_run_after_each_saved_epoch_and_once_at_the_end(train):
    """The seam for work that is not a record (a figure each few epochs, a look at best.pt):
    each epoch's call sees that epoch saved and the model that selects best.pt; the last call
    comes once the epoch loop has ended."""
    seen = []

    class Watcher(TrainingHook):
        def after_validation(self, model, loggers) -> None:
            saved = load_checkpoint(self.run_dir / "last.pt")["epoch"]
            selecting = model is self.training.selecting_model
            seen.append(("validation", self.training.progress.epoch, saved, selecting))

        def after_training(self, stop, loggers) -> None:
            seen.append(("training", self.training.progress.epoch, stop.requested()))

    HOOK_TYPES.append(Watcher)
    try:
        train("--epochs", "2", "--ema", "0.9")
    finally:
        HOOK_TYPES.remove(Watcher)
    assert seen == [
        ("validation", 1, 1, True),
        ("validation", 2, 2, True),
        ("training", 2, False),
    ]
