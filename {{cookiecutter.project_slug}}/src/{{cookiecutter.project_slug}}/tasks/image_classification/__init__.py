"""Image classification: a batch is (images (N, C, H, W), labels (N,) or class-probability
rows with MixUp/CutMix); cross-entropy; accuracy, top-5 and a confusion matrix."""

from .. import PredictHelp, TaskDeclaration

DECLARATION = TaskDeclaration(
    name="image_classification",
    metrics={"val_loss": "min", "val_acc": "max"},
    headline="val_acc",
    supports=frozenset(
        {
            "mixup",
            "cutmix",
            "label_smoothing",
            "class_weights",
            "balanced_sampling",
            "embeddings",
            "mistakes",
            "onnx",
        }
    ),
    predict_help=PredictHelp(
        unit="image",
        sources="image files",
        arguments="image files, folders (their images, recursively) or list files (one path per "
        "line, relative to the list file; blank lines and lines starting with # are skipped)",
    ),
)
