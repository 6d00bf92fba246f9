"""--cam-every in TensorBoard: each due epoch's Grad-CAM grid, at that epoch's step."""

import io

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import read_metrics


@pytest.mark.slow
def test_grids_are_logged_at_their_epochs_steps(train):
    run_dir = train("--epochs", "2", "--cam-every", "1")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    grids = events.Images("cam/val")
    assert [grid.step for grid in grids] == [record["step"] for record in read_metrics(run_dir)]
    for epoch, grid in enumerate(grids, start=1):
        logged = Image.open(io.BytesIO(grid.encoded_image_string))
        saved = Image.open(run_dir / "cam" / f"epoch-{epoch:03d}.png")
        assert (grid.width, grid.height) == saved.size
        assert logged.convert("RGB").tobytes() == saved.convert("RGB").tobytes()
