"""Your own texts: CSV, TSV or JSONL files (train plus val and/or test, or one file) or class
folders of .txt files, under --data-dir (data/text_files.py reads every layout)."""

from ..data import text_files
from ..data.text_datasets import encoded_splits, text_spec
from . import DatasetInfo, register


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    found = text_files.read_text_splits(
        config.data_dir, config.text_column, config.label_column, config.val_fraction, config.seed
    )
    train_texts = [text for text, _ in found.splits["train"]]
    spec = text_spec(config, found.class_names, train_texts, trained_spec)
    return encoded_splits(found.splits, spec), spec


def class_names(config) -> list[str]:
    return text_files.text_class_names(config.data_dir, config.text_column, config.label_column)


register(
    DatasetInfo(
        "text_files",
        task="text_classification",
        build=build,
        class_names=class_names,
        needs_data_dir=True,
        scored_whole=text_files.scored_whole,
    )
)
