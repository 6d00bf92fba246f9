"""Text classification: a batch is ({"ids", "mask", "lengths"} padded to its longest text,
labels (N,)); cross-entropy; accuracy, macro-F1, per-class precision and recall and a confusion
matrix."""

from .. import PredictHelp, TaskDeclaration

DECLARATION = TaskDeclaration(
    name="text_classification",
    metrics={"val_loss": "min", "val_acc": "max", "val_f1": "max"},
    headline="val_acc",
    supports=frozenset(
        {"label_smoothing", "class_weights", "balanced_sampling", "embeddings", "mistakes", "onnx"}
    ),
    fixed_on_resume=("tokenizer", "tokenizer_model", "vocab_size", "max_length", "no_bucketing"),
    predict_help=PredictHelp(
        unit="text",
        sources="texts",
        arguments="texts (each argument is one), text files (one text per non-blank line) or - "
        "to read them from stdin (one per line)",
    ),
)
