"""Text classification under DDP: 2 gloo processes on the CPU."""

import math
import subprocess
import sys

import pytest

from conftest import QUICK, load_weights, read_metrics

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
# Each rank builds the data; the tokenizer it encodes with is written to <folder>/rank<N>.json.
TOKENIZER_OF_EACH_RANK = """
import sys

import torch.distributed as dist

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.text_datasets import text_spec
from {{ cookiecutter.project_slug }}.datasets.languages import messages

dist.init_process_group("gloo")
config = parse_config(["--tokenizer-model", "wordpiece", "--vocab-size", "2000"]).data
spec = text_spec(config, ("a", "b"), [text for text, _ in messages()], None)
with open(f"{sys.argv[1]}/rank{dist.get_rank()}.json", "w", encoding="utf-8") as file:
    file.write(spec.tokenizer)
dist.destroy_process_group()
"""


def torchrun(processes: int, *argv: str) -> subprocess.CompletedProcess:
    command = [*TORCHRUN, f"--nproc_per_node={processes}", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def trained_samples(run_dir) -> int:
    (record,) = read_metrics(run_dir)
    return round(record["samples_per_second"] * record["epoch_seconds"])


@pytest.mark.slow
def test_two_gloo_processes_train_identical_replicas_on_every_text(train, small_data, tmp_path):
    flags = [*small_data, "--device", "cpu", "--output-dir", str(tmp_path)]
    module = ["-m", "{{ cookiecutter.project_slug }}.train", *QUICK, *flags]
    result = torchrun(2, *module, "--name", "ddp")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "world size 2" in result.stderr
    assert "parameters identical on all 2 ranks" in result.stderr
    assert len(load_weights(tmp_path / "ddp" / "last.pt")) > 0
    assert len(list((tmp_path / "ddp").glob("*.pt"))) == 2  # no per-rank copies
    single = train(*flags, name="single")
    # Each rank takes half the texts; DistributedSampler repeats one to even out an odd count.
    assert trained_samples(tmp_path / "ddp") == 2 * math.ceil(trained_samples(single) / 2)
    tokenizers = [(tmp_path / name / "tokenizer.json").read_text() for name in ("ddp", "single")]
    assert tokenizers[0] == tokenizers[1]


@pytest.mark.slow
def test_every_rank_encodes_with_rank0s_tokenizer(tmp_path):
    """WordPiece training breaks ties differently in every process: the ranks would encode the
    same text with other ids than the checkpoint's tokenizer, unless they take rank 0's."""
    script = tmp_path / "tokenizer_of_each_rank.py"
    script.write_text(TOKENIZER_OF_EACH_RANK)
    result = torchrun(2, str(script), str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "rank0.json").read_text() == (tmp_path / "rank1.json").read_text()
