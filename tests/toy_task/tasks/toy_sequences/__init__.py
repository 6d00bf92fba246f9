"""A toy sequence task: inputs are a dict of padded token ids and a mask, targets a dict."""

from .. import TaskDeclaration

DECLARATION = TaskDeclaration(
    name="toy_sequences",
    metrics={"val_loss": "min", "val_acc": "max"},
    headline="val_acc",
    supports=frozenset(),
)
