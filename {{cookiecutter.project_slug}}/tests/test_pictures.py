"""Class names on every picture the project draws, each with its glyphs (or written as code
points where no font has them), and the confusion matrix the loggers draw after each validation."""

import numpy as np
import pytest
import torch
{% if cookiecutter.insight == "yes" -%}
from PIL import Image, ImageDraw
{% else -%}
from PIL import ImageDraw
{% endif %}
{% if cookiecutter.insight == "yes" -%}
from {{ cookiecutter.project_slug }}.insight.cam import with_labels
from {{ cookiecutter.project_slug }}.insight.finished_run import TILE_SIDE, gallery
from {{ cookiecutter.project_slug }}.loggers.base import Mistake
{% endif -%}
from {{ cookiecutter.project_slug }}.loggers.pictures import (
    SHOWN_CLASSES,
    confusion_picture,
    label_font,
    shown_classes,
)

NON_ASCII_NAMES = ("café", "Ελλάδα", "кошка")


def characters_of(font) -> set[int]:
    """The code points a Pillow font has glyphs for, read from its character map."""
    ttlib = pytest.importorskip("fontTools.ttLib", reason="needs fontTools to read a font's cmap")
    source = font.path  # a file name, or Pillow's own font as a file object
    if hasattr(source, "seek"):
        source.seek(0)
    return set(ttlib.TTFont(source, fontNumber=0).getBestCmap())


def recorded_texts(monkeypatch) -> list:
    """(text, font) of every text drawn on a colour picture from now until the test ends."""
    drawn = []
    draw_text = ImageDraw.ImageDraw.text

    def recording(self, xy, text, *args, **kwargs):
        if self.mode == "RGB":
            drawn.append((text, kwargs.get("font", args[1] if len(args) > 1 else None)))
        return draw_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", recording)
    return drawn
{%- if cookiecutter.insight == "yes" %}


def test_mistakes_gallery_draws_non_ascii_class_names_with_their_glyphs(monkeypatch):
    drawn_texts = recorded_texts(monkeypatch)
    tile = Image.new("RGB", (TILE_SIDE, TILE_SIDE))
    gallery([Mistake(index, name, "a", 0.9, tile) for index, name in enumerate(NON_ASCII_NAMES)])
    texts = [text for text, _ in drawn_texts]
    assert all(f"true {name}" in texts for name in NON_ASCII_NAMES)
    for text, font in drawn_texts:
        missing = {char for char in text if ord(char) not in characters_of(font)}
        assert not missing, f"{text!r}: no glyph for {sorted(missing)}"


def test_grad_cam_captions_draw_non_ascii_class_names_with_their_glyphs(monkeypatch):
    drawn_texts = recorded_texts(monkeypatch)
    panels = torch.zeros(3, 80, 3 * 128, dtype=torch.uint8)
    corners = [(index * 128, 0) for index in range(3)]
    with_labels(panels, corners, (128, 80), list(NON_ASCII_NAMES), ["café", "café", "кошка"])
    texts = [text for text, _ in drawn_texts]
    assert [text for text in texts if text.startswith("true")] == [
        f"true {name}" for name in NON_ASCII_NAMES
    ]
    for text, font in drawn_texts:
        missing = {char for char in text if ord(char) not in characters_of(font)}
        assert not missing, f"{text!r}: no glyph for {sorted(missing)}"
{%- endif %}


def test_characters_no_installed_font_has_are_written_as_code_points():
    font = label_font(["cat\U0010fffc", *NON_ASCII_NAMES])
    assert font.drawable("cat\U0010fffc") == "cat<U+10FFFC>"
    assert [font.drawable(name) for name in NON_ASCII_NAMES] == list(NON_ASCII_NAMES)


def test_confusion_picture_of_many_classes_shows_the_most_confused_at_a_bounded_size():
    classes = 1000
    matrix = torch.diag(torch.full((classes,), 3))
    matrix[5, 900] = matrix[900, 5] = matrix[42, 7] = 2  # 5 and 900 most confused, then 7, 42
    names = tuple(f"class {index}" for index in range(classes))
    assert shown_classes(matrix, 3) == [5, 7, 900]
    assert shown_classes(matrix)[:4] == [0, 1, 2, 3]  # ties: in class order
    shown = shown_classes(matrix)
    assert len(shown) == SHOWN_CLASSES
    picture = confusion_picture(matrix, shown, names, label_font(names))
    assert max(picture.size) <= 1000


def test_confusion_picture_of_one_image_labels_the_classes_without_images(monkeypatch):
    drawn_texts = recorded_texts(monkeypatch)
    matrix = torch.zeros(3, 3, dtype=torch.long)
    matrix[1, 1] = 1
    font = label_font(NON_ASCII_NAMES)
    picture = confusion_picture(matrix, shown_classes(matrix), NON_ASCII_NAMES, font)
    texts = [text for text, _ in drawn_texts]
    assert {"café (no samples)", "Ελλάδα", "кошка (no samples)"} <= set(texts)
    assert texts.count("1") == 1 and "0" not in texts  # cells of no samples are blank
    assert np.asarray(picture.convert("L")).min() < 128  # drawn, dark on light
    for text, font in drawn_texts:
        assert all(ord(char) in characters_of(font) for char in text if not char.isspace()), text
