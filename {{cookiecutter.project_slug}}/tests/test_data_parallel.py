import pytest
import torch

from conftest import load_weights


def test_dp_without_two_gpus_says_it_does_nothing_and_trains(train):
    run_dir = train("--dp", "--device", "cpu")
    assert "--dp does nothing here" in (run_dir / "train.log").read_text()
    assert (run_dir / "last.pt").stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more CUDA GPUs")
def test_dp_splits_batches_over_every_visible_gpu(train):
    run_dir = train("--dp", "--device", "cuda")
    log = (run_dir / "train.log").read_text()
    assert f"DataParallel over {torch.cuda.device_count()} GPUs" in log
    assert not any(key.startswith("module.") for key in load_weights(run_dir / "last.pt"))
