"""What the model, the checkpoint and an exported file know about the data."""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """What the model, the checkpoint and an exported file need to know about the data: its
    classes; for image inputs, their channels, size and normalisation; for text, the tokenizer
    (its Hugging Face JSON), its vocabulary size and the longest token sequence (None otherwise)."""

    class_names: tuple[str, ...]
    in_channels: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize_size: int | None = None  # evaluation resizes the shorter side to this, then crops
    tokenizer: str | None = None
    vocab_size: int | None = None
    max_length: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        """Plain data (lists for tuples), as checkpoints and model.onnx keep it: the fields the
        task's data sets, without those of other inputs (None; from_dict restores them)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
            if value is not None
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(
            **{
                key: tuple(value) if isinstance(value, list) else value
                for key, value in values.items()
                if key in known
            }
        )


def class_differences(expected: list[str], found: list[str]) -> str:
    """'missing a; extra b': how the class names `found` differ from those `expected`."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    differences = [f"missing {', '.join(missing)}"] if missing else []
    differences += [f"extra {', '.join(extra)}"] if extra else []
    return "; ".join(differences) or "the same names in another order"


def per_class(class_names, values: list) -> str:
    return ", ".join(f"{name}: {value}" for name, value in zip(class_names, values, strict=True))
