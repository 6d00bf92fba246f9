"""A toy detection task: inputs are a list of pictures of different sizes, targets a list of
dicts of boxes and labels (torchvision's detection layout)."""

from .. import TaskDeclaration

DECLARATION = TaskDeclaration(
    name="toy_boxes",
    metrics={"val_loss": "min", "val_iou": "max", "val_acc": "max"},
    headline="val_iou",
    supports=frozenset(),
)
