"""Pictures with class names on them: a font that has the names' characters, text fitted to a
width, and the confusion matrix the loggers draw after each validation.

Class names are drawn with Pillow in the first font that has a glyph for each of their
characters (label_font); a character no installed font has is written as its code point,
never as a box. A confusion matrix shows at most SHOWN_CLASSES classes, so that drawing it
every epoch costs the same few milliseconds whatever the class count.
"""

import importlib.util
import math
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 10
LINE_HEIGHT = 12
MARGIN = 4
NO_GLYPH = "\U0010fffd"  # a private-use code point: every font draws its missing-glyph shape
SHOWN_CLASSES = 20  # a confusion matrix beyond this many classes shows the most confused
LABEL_WIDTH = 140  # the most pixels a class name takes beside or above a confusion matrix
BLUES = ((247, 251, 255), (8, 48, 107))  # the colours of no and of the most samples


def fitted(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """`text`, cut short with "..." where it would run past `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


@dataclass(frozen=True)
class LabelFont:
    """A font for class names, and the characters it has no glyph for (written as code points,
    such as <U+732B>, rather than drawn as boxes)."""

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    missing: frozenset[str]

    def drawable(self, text: str) -> str:
        return "".join(f"<U+{ord(char):04X}>" if char in self.missing else char for char in text)


def label_font(texts: Iterable[str], size: int = FONT_SIZE) -> LabelFont:
    """The first font with a glyph for every character of `texts`: DejaVu Sans (Latin, Greek,
    Cyrillic and more), else an installed font that fontconfig finds for them, else Pillow's
    own; when none has them all, the one that lacks fewest."""
    characters = {char for text in texts for char in text if not char.isspace()}
    best = None
    for font in candidate_fonts(characters, size):
        missing = frozenset(missing_glyphs(font, characters))
        if best is None or len(missing) < len(best.missing):
            best = LabelFont(font, missing)
        if not missing:
            break
    return best


def candidate_fonts(characters: set[str], size: int):
    """Fonts to try, in order, each loaded when asked for: fontconfig is asked only when DejaVu
    Sans lacks a character."""
    yield from truetype_fonts([*bundled_dejavu_sans(), "DejaVuSans.ttf"], size)
    yield from truetype_fonts(fontconfig_fonts(characters), size)
    yield ImageFont.load_default()


def truetype_fonts(paths: list[str], size: int):
    for path in paths:
        try:  # a bare file name is looked for in the system's font folders
            yield ImageFont.truetype(path, size)
        except OSError:
            continue


def bundled_dejavu_sans() -> list[str]:
    """The copy of DejaVu Sans that matplotlib ships, when it is installed (not imported)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    return [str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")]


def fontconfig_fonts(characters: set[str]) -> list[str]:
    """Installed fonts that have every character beyond ASCII, as fontconfig lists them (none
    where fontconfig is not installed)."""
    wanted = sorted(f"{ord(char):x}" for char in characters if not char.isascii())
    if not wanted or shutil.which("fc-list") is None:
        return []
    command = ["fc-list", "--format=%{file}\n", f":charset={' '.join(wanted)}"]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    fonts = [path for path in listed.splitlines() if path.endswith((".ttf", ".otf", ".ttc"))]
    return sorted(fonts)


def missing_glyphs(font, characters: set[str]) -> set[str]:
    """The characters `font` draws as it draws a code point no font has: its missing glyph."""
    no_glyph = glyph_pixels(font, NO_GLYPH)
    return {char for char in characters if glyph_pixels(font, char) in (None, no_glyph)}


def glyph_pixels(font, char: str) -> bytes | None:
    """`char` drawn alone, or None where the font cannot draw it (Pillow's bitmap font cannot
    encode it, or an installed font fails to render)."""
    canvas = Image.new("L", (3 * FONT_SIZE, 3 * FONT_SIZE))
    try:
        ImageDraw.Draw(canvas).text((FONT_SIZE, FONT_SIZE), char, fill=255, font=font)
    except (UnicodeEncodeError, OSError):
        return None
    return canvas.tobytes()


def shown_classes(matrix: torch.Tensor, limit: int = SHOWN_CLASSES) -> list[int]:
    """Every class when there are at most `limit`; else the `limit` with the most errors (their
    samples predicted as another class, and other samples predicted as them), in class order."""
    if len(matrix) <= limit:
        return list(range(len(matrix)))
    errors = matrix.sum(dim=0) + matrix.sum(dim=1) - 2 * matrix.diagonal()
    return sorted(torch.argsort(errors, descending=True, stable=True)[:limit].tolist())


def confusion_picture(
    matrix: torch.Tensor, shown: list[int], class_names: tuple[str, ...], font: LabelFont
) -> Image.Image:
    """The rows and columns `shown` (see shown_classes) of the confusion matrix (rows: true
    class, columns: predicted), each cell with its count and shaded by it. A class without
    validation samples is labelled so (its row is empty, not wrong)."""
    counts = matrix[shown][:, shown]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [
        class_names[index] + ("" if matrix[index].sum() else " (no samples)") for index in shown
    ]
    labels = [fitted(font.drawable(label), measure, font.font, LABEL_WIDTH) for label in labels]
    label_width = max(math.ceil(measure.textlength(label, font=font.font)) for label in labels)
    label_width += 6
    cell = max(20, math.ceil(measure.textlength(str(int(counts.max())), font=font.font)) + 6)
    title_height, side = 2 * LINE_HEIGHT, len(shown) * cell
    top = title_height + label_width
    picture = Image.new("RGB", (label_width + side + MARGIN, top + side + MARGIN), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((MARGIN, MARGIN), confusion_title(len(shown), len(matrix)), "black", font.font)
    strip = class_labels_strip(labels, cell, label_width, font.font)
    picture.paste(strip, (label_width, title_height))
    for row, label in enumerate(labels):
        middle = top + row * cell + cell // 2
        draw.text((label_width - 3, middle), label, "black", font.font, anchor="rm")
    draw_cells(draw, counts, (label_width, top), cell, font.font)
    return picture


def draw_cells(draw: ImageDraw.ImageDraw, counts: torch.Tensor, origin, cell: int, font) -> None:
    """Each count in its square cell, shaded by its share of the largest count; cells of no
    samples are left blank, which also keeps drawing a sparse matrix quick."""
    side = len(counts) * cell
    draw.rectangle((*origin, origin[0] + side, origin[1] + side), fill=shade(0.0))
    scale = max(int(counts.max()), 1)
    for row, column in counts.nonzero().tolist():
        count = int(counts[row, column])
        left, top = origin[0] + column * cell, origin[1] + row * cell
        share = count / scale
        draw.rectangle((left, top, left + cell, top + cell), fill=shade(share))
        colour = "white" if share > 0.5 else "black"
        middle = (left + cell // 2, top + cell // 2)
        draw.text(middle, str(count), colour, font, anchor="mm")


def confusion_title(shown: int, classes: int) -> str:
    which = "" if shown == classes else f"the {shown} most confused of {classes} classes; "
    return f"{which}rows: true class, columns: predicted"


def class_labels_strip(labels: list[str], cell: int, width: int, font) -> Image.Image:
    """The labels turned a quarter left, each over its column, reading upwards from the top of
    the matrix."""
    strip = Image.new("RGB", (width, len(labels) * cell), "white")
    draw = ImageDraw.Draw(strip)
    for row, label in enumerate(labels):
        draw.text((3, row * cell + cell // 2), label, "black", font, anchor="lm")
    return strip.rotate(90, expand=True)


def shade(share: float) -> tuple[int, int, int]:
    """From white-blue (no samples) to dark blue (the most)."""
    low, high = BLUES
    return tuple(round(a + (b - a) * share) for a, b in zip(low, high, strict=True))
{%- if cookiecutter.insight == "yes" %}


def unnormalised(images: torch.Tensor, spec) -> torch.Tensor:
    """Normalised model inputs (one image or a batch) back as pictures with values in [0, 1];
    `spec` gives the mean and std they were normalised with."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)
{%- endif %}
