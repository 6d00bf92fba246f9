"""What TensorBoard's dashboards read of the end-of-run embeddings and mistakes."""

import math
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

EMBEDDED, FEATURES, IMAGE_SIZE = 10, 128, 8  # --embeddings, simple_cnn's features, QUICK's


@pytest.mark.slow
def test_tensorboard_holds_the_projector_and_the_mistakes_grid(train):
    run_dir = train("--embeddings", str(EMBEDDED), "--mistakes", "4")
    board = run_dir / "tensorboard"
    config = text_format.Parse((board / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    tensors = np.loadtxt(board / embedding.tensor_path, delimiter="\t")
    assert tensors.shape == (EMBEDDED, FEATURES)
    saved = np.loadtxt(run_dir / "embeddings" / "features.tsv", delimiter="\t")
    np.testing.assert_allclose(tensors, saved, rtol=1e-5, atol=1e-6)
    metadata = (board / embedding.metadata_path).read_text().splitlines()
    assert metadata[0] == "index\tlabel\tprediction" and len(metadata) == 1 + EMBEDDED
    assert metadata == (run_dir / "embeddings" / "metadata.tsv").read_text().splitlines()
    assert list(embedding.sprite.single_image_dim) == [IMAGE_SIZE, IMAGE_SIZE]
    sprite = Image.open(board / embedding.sprite.image_path)
    side = math.ceil(math.sqrt(EMBEDDED)) * IMAGE_SIZE  # a square of thumbnails
    assert sprite.size == (side, side)
    assert Path(embedding.tensor_path).parent == Path(embedding.sprite.image_path).parent

    events = EventAccumulator(str(board), size_guidance={"images": 0})
    events.Reload()
    (mistakes,) = events.Images("val/mistakes")
    assert (mistakes.width, mistakes.height) == Image.open(run_dir / "mistakes.png").size
