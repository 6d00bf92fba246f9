"""What TensorBoard's projector and text dashboard read of a text run's embeddings and
mistakes."""

import csv
import html
import re
import warnings

import pytest
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from {{ cookiecutter.project_slug }}.loggers.base import Mistake, markdown_table

EMBEDDED, MISTAKES, FEATURES = 20, 8, 64  # --embeddings, --mistakes, bag_of_embeddings' width
MARKUP = "a *b* _c_ `d` [e](f) <b>g</b> &amp; #h \\ | i - 1. + > ~ !"


def table_cells(markdown: str) -> list[list[str]]:
    """The cells of the table TensorBoard's text dashboard renders from `markdown`."""
    with warnings.catch_warnings():  # its HTML sanitiser warns of itself when imported
        warnings.simplefilter("ignore", DeprecationWarning)
        from tensorboard.plugin_util import markdown_to_safe_html

    rendered = markdown_to_safe_html(markdown)
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.DOTALL)
    return [
        [html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.DOTALL)]
        for row in rows
    ]


def test_a_mistakes_text_shows_verbatim_on_one_line_in_the_table():
    mistake = Mistake(index=0, label="en_GB", prediction="de", probability=0.5, text=MARKUP)
    line_broken = Mistake(1, "en", "de", 0.25, text='a "quoted",\ntext\twith\r\nbreaks')
    assert table_cells(markdown_table([mistake, line_broken])) == [
        list(Mistake.COLUMNS),
        [MARKUP, "en_GB", "de", "0.5"],
        ['a "quoted", text with breaks', "en", "de", "0.25"],
    ]


@pytest.mark.slow
def test_tensorboard_holds_the_texts_projector_and_the_mistakes_table(train):
    run_dir = train("--embeddings", str(EMBEDDED), "--mistakes", str(MISTAKES))
    board = run_dir / "tensorboard"
    config = text_format.Parse((board / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    assert embedding.sprite.image_path == ""  # texts have no thumbnails
    metadata = (board / embedding.metadata_path).read_text(encoding="utf-8").splitlines()
    saved = (run_dir / "embeddings" / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert metadata == saved and len(metadata) == 1 + EMBEDDED
    assert metadata[0] == "index\ttext\tlabel\tprediction"
    tensors = (board / embedding.tensor_path).read_text().splitlines()
    assert len(tensors) == EMBEDDED and all(len(row.split("\t")) == FEATURES for row in tensors)

    events = EventAccumulator(str(board), size_guidance={"tensors": 0})
    events.Reload()
    assert {"f1/val", "accuracy/val"} <= set(events.Tags()["scalars"])  # the task's own too
    (summary,) = events.Tensors("val/mistakes/text_summary")
    markdown = summary.tensor_proto.string_val[0].decode("utf-8")
    with open(run_dir / "mistakes.csv", newline="", encoding="utf-8") as file:
        written = list(csv.reader(file))
    assert len(written) == 1 + MISTAKES
    expected = [[" ".join(row[0].split()), *row[1:]] for row in written]
    assert table_cells(markdown) == expected
