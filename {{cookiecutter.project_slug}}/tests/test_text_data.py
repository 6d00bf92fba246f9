"""The text task's data path: padded batches, the length-bucketed sampler, --max-length, and the
tokenizer a run keeps (trained, read from --tokenizer, or the checkpoint's on resume)."""

import csv
import logging
import re
from collections import Counter

import pytest
import torch
from tokenizers import Tokenizer

from {{ cookiecutter.project_slug }}.config.parser import parse_config
from {{ cookiecutter.project_slug }}.data.bucketing import LengthBucketedShuffle, padding_share
from {{ cookiecutter.project_slug }}.data.sampling import SeededShuffle
from {{ cookiecutter.project_slug }}.data.tokenizer import tokenizer_from_json, train_tokenizer
from {{ cookiecutter.project_slug }}.evaluate import main as evaluate_main
from {{ cookiecutter.project_slug }}.runs.checkpoint import load_checkpoint
from {{ cookiecutter.project_slug }}.runs.runtime import Runtime
from {{ cookiecutter.project_slug }}.tasks.text_classification.task import padded_batch, training_batch
from {{ cookiecutter.project_slug }}.train import main as train_main
from {{ cookiecutter.project_slug }}.training.fit import build_training

from conftest import QUICK, language_rows, load_weights

CLS_ID = 2
BATCH = 16
# Token counts of 1000 texts, 1 to 199: a single pool of the bucketed sampler (a pool holds
# 100 batches of 16).
LENGTHS = torch.randint(1, 200, (1000,), generator=torch.Generator().manual_seed(0))


def test_a_batch_is_padded_at_the_end_to_its_longest_text():
    sequences = [torch.tensor([2, 5, 6]), torch.tensor([2]), torch.tensor([2, 7, 8, 9, 10])]
    batch = padded_batch(sequences)
    assert batch["ids"].tolist() == [[2, 5, 6, 0, 0], [2, 0, 0, 0, 0], [2, 7, 8, 9, 10]]
    assert batch["mask"].tolist() == [[True] * n + [False] * (5 - n) for n in (3, 1, 5)]
    assert batch["lengths"].tolist() == [3, 1, 5]
    assert (batch["ids"].dtype, batch["mask"].dtype) == (torch.int64, torch.bool)
    inputs, labels = training_batch([(sequence, 1, 7) for sequence in sequences])
    assert torch.equal(inputs["ids"], batch["ids"]) and labels.tolist() == [1, 1, 1]


def check_padded(inputs: dict, max_length: int) -> int:
    """The batch's width, after checking that it is its longest text's, within max_length, with
    the mask and lengths of its real tokens."""
    ids, mask, lengths = inputs["ids"], inputs["mask"], inputs["lengths"]
    assert ids.shape[1] == int(lengths.max()) <= max_length
    assert torch.equal(mask.sum(dim=1), lengths) and lengths.min() >= 1
    assert torch.equal(mask, torch.arange(ids.shape[1]) < lengths[:, None])  # padding at the end
    assert (ids[~mask] == 0).all() and (ids[:, 0] == CLS_ID).all()
    return ids.shape[1]


def test_training_and_validation_batches_are_as_wide_as_their_longest_text():
    config = parse_config(QUICK)  # --max-length 256: a few texts of each split are longer
    training = build_training(config, Runtime(torch.device("cpu")), logging.getLogger("test"))
    train_widths = [check_padded(inputs, 256) for inputs, _ in training.train_loader]
    val_widths = [check_padded(inputs, 256) for inputs, _ in training.val_loader]
    assert max(train_widths) == max(val_widths) == 256
    assert min(train_widths) < 8 and min(val_widths) < 64  # each batch its own width


def bucketed(rank: int = 0, world_size: int = 1, seed: int = 0) -> LengthBucketedShuffle:
    return LengthBucketedShuffle(LENGTHS, BATCH, rank, world_size, seed)


def epoch_order(sampler, epoch: int, start: int = 0) -> list[tuple[int, int]]:
    """The (index, sample seed) keys the sampler yields for `epoch` from position `start` on."""
    sampler.set_epoch(epoch, start)
    return list(sampler)


def indices(keys: list[tuple[int, int]]) -> list[int]:
    return [index for index, _ in keys]


def in_batches(order: list[int]) -> list[list[int]]:
    """The batches a DataLoader cuts from the order."""
    return [order[start : start + BATCH] for start in range(0, len(order), BATCH)]


def test_bucketed_batches_hold_texts_of_similar_lengths():
    sampler = bucketed()
    loader_batches = in_batches(indices(epoch_order(sampler, 0)))
    assert loader_batches == sampler.batches()  # the partial batch last: batches stay whole
    shuffled = SeededShuffle(range(len(LENGTHS)), 0, 1, seed=0)
    shuffled_batches = in_batches(indices(epoch_order(shuffled, 0)))
    assert padding_share(loader_batches, LENGTHS) < 0.05
    assert padding_share(shuffled_batches, LENGTHS) > 0.3
    spreads = [int(LENGTHS[batch].max() - LENGTHS[batch].min()) for batch in loader_batches]
    assert max(spreads) <= 10  # from 1 to 199 tokens in all


def test_the_order_depends_on_the_seed_and_the_epoch_only():
    first = epoch_order(bucketed(seed=3), 2)
    assert epoch_order(bucketed(seed=3), 2) == first
    assert epoch_order(bucketed(seed=3), 3) != first
    assert epoch_order(bucketed(seed=4), 2) != first
    assert sorted(indices(first)) == list(range(len(LENGTHS)))


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_each_epoch_disjointly_and_completely(world_size):
    shares = [indices(epoch_order(bucketed(rank, world_size), 1)) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # every rank makes the same steps
    drawn = Counter(index for share in shares for index in share)
    assert set(drawn) == set(range(len(LENGTHS)))
    # DistributedSampler repeats the first indices to even out the shares, and nothing else.
    padding = world_size * len(shares[0]) - len(LENGTHS)
    assert sum(drawn.values()) - len(drawn) == padding < world_size
    for rank, share in enumerate(shares):
        assert padding_share(in_batches(share), LENGTHS) < 0.1, rank


@pytest.mark.parametrize("start", [1, BATCH, 5 * BATCH + 3, len(LENGTHS) - 1])
def test_a_resumed_epoch_yields_exactly_the_rest(start):
    whole = epoch_order(bucketed(seed=5), 4)
    assert epoch_order(bucketed(seed=5), 4, start) == whole[start:]  # in a new process, too


def test_max_length_cuts_texts_and_train_log_counts_them(train, small_data, small_table):
    run_dir = train(*small_data, "--max-length", "8")
    log_text = (run_dir / "train.log").read_text()
    pattern = r"(\w+) split: (\d+) of (\d+) texts are longer than --max-length 8 tokens"
    counted = {split: (int(cut), int(total)) for split, cut, total in re.findall(pattern, log_text)}
    assert set(counted) == {"train", "val"}
    tokenizer = tokenizer_from_json((run_dir / "tokenizer.json").read_text())
    with open(small_table, newline="", encoding="utf-8") as file:
        texts = [row["text"] for row in csv.DictReader(file)]
    longer = sum(len(encoding.ids) > 8 for encoding in tokenizer.encode_batch(texts))
    assert sum(cut for cut, _ in counted.values()) == longer > 0
    assert sum(total for _, total in counted.values()) == len(texts)


def embedding_rows(checkpoint) -> int:
    return load_weights(checkpoint)["embedding.weight"].shape[0]


def test_the_run_keeps_its_tokenizer_and_a_resume_reuses_it(train, small_data):
    run_dir = train(*small_data)
    saved = (run_dir / "tokenizer.json").read_text()
    train(*small_data, "--epochs", "2", "--resume", "auto")
    assert (run_dir / "tokenizer.json").read_text() == saved
    for name in ("last.pt", "best.pt"):
        spec = load_checkpoint(run_dir / name)["data_spec"]
        assert spec["tokenizer"] == saved and spec["vocab_size"] == 300
        assert embedding_rows(run_dir / name) == 300
    assert (run_dir / "train.log").read_text().count("subwords trained on") == 1


def test_a_resume_with_other_tokenizer_flags_is_refused_in_one_line(train, small_data, capsys):
    run_dir = train(*small_data)
    before = (run_dir / "last.pt").read_bytes()
    refusals = {
        ("--vocab-size", "400"): "was trained with --vocab-size 300",
        ("--tokenizer-model", "wordpiece"): "was trained with --tokenizer-model bpe",
        ("--tokenizer", str(run_dir / "tokenizer.json")): "was trained with no --tokenizer",
        ("--max-length", "100"): "was trained with --max-length 32",
    }
    flags = [*QUICK, *small_data, "--output-dir", str(run_dir.parent), "--name", "run"]
    for changed, words in refusals.items():
        capsys.readouterr()
        assert train_main([*flags, "--resume", "auto", *changed]) == 2
        (error,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert error.startswith("error: checkpoint") and words in error, changed
        assert "resume with the same flags" in error
    assert (run_dir / "last.pt").read_bytes() == before


def test_a_given_tokenizer_is_used_as_it_is(train, small_data, tmp_path):
    english_and_french = [text for text, _ in language_rows(("en", "fr"))]
    given = train_tokenizer(english_and_french, "wordpiece", 500)
    path = tmp_path / "given.json"
    given.save(str(path))
    run_dir = train(*small_data, "--tokenizer", str(path))  # QUICK's --vocab-size 300 trains none
    expected = Tokenizer.from_file(str(path)).to_str()
    spec = load_checkpoint(run_dir / "last.pt")["data_spec"]
    assert spec["tokenizer"] == expected == (run_dir / "tokenizer.json").read_text()
    assert spec["vocab_size"] == given.get_vocab_size() == embedding_rows(run_dir / "last.pt")
    log_text = (run_dir / "train.log").read_text()
    assert f"subwords read from {path}" in log_text and "subwords trained" not in log_text
    path.unlink()  # the checkpoint keeps the tokenizer: evaluate and resume need no file
    assert evaluate_main(["--checkpoint", str(run_dir / "best.pt")]) == 0
    resumed = train(*small_data, "--tokenizer", str(path), "--epochs", "2", "--resume", "auto")
    assert load_checkpoint(resumed / "last.pt")["data_spec"]["tokenizer"] == expected
