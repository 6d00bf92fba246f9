"""What the model, the checkpoint and an exported file know about the data."""

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """What the model, the checkpoint and an exported file need to know about the data."""

    class_names: tuple[str, ...]
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int  # evaluation resizes the shorter side to this, then centre-crops

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {
            "class_names": list(self.class_names),
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_size": self.resize_size,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls(
            tuple(values["class_names"]),
            values["in_channels"],
            values["image_size"],
            tuple(values["mean"]),
            tuple(values["std"]),
            values["resize_size"],
        )


def class_differences(expected: list[str], found: list[str]) -> str:
    """'missing a; extra b': how the class names `found` differ from those `expected`."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    differences = [f"missing {', '.join(missing)}"] if missing else []
    differences += [f"extra {', '.join(extra)}"] if extra else []
    return "; ".join(differences) or "the same names in another order"


def per_class(class_names, values: list) -> str:
    return ", ".join(f"{name}: {value}" for name, value in zip(class_names, values, strict=True))
