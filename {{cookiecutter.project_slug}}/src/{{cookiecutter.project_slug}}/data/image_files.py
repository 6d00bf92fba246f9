"""Reading any image file people have as the 8-bit RGB picture they see in a viewer.

- Every mode Pillow opens is converted: 1, L, P, RGB, CMYK, YCbCr, ...
- 16-bit, 32-bit integer and float images are scaled to 0-255 by their range, not clipped:
  I;16 by 65535; I by the smallest of 255 or 65535 that holds its values; F by 1.0 when its
  values lie in [0, 1], else by 255 or 65535 the same way (anything larger by its maximum).
- Transparent pixels (LA, PA, RGBA, palette transparency) are shown over white, as viewers do.
- The EXIF orientation tag is applied, so phone photos are upright.
- Animated GIF and multi-page TIFF files give their first frame.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
BACKGROUND = (255, 255, 255)


def is_image_file(path: Path) -> bool:
    """An image extension (any case); hidden files and macOS `._name.jpg` sidecars are not."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_rgb(path: Path, min_side: int | None = None) -> Image.Image:
    """Decode the whole file (a truncated one fails here) and return it as 8-bit RGB.

    With `min_side`, a JPEG much larger than needed is decoded at 1/2, 1/4 or 1/8 scale, its
    shorter side still at least `min_side`: a phone photo then decodes many times faster.
    """
    with Image.open(path) as image:
        if min_side is not None and min(image.size) >= 2 * min_side:
            image.draft("RGB", (min_side, min_side))
        image.load()
        if "exif" in image.info or image.format == "TIFF":  # parsing EXIF costs as much as a decode
            ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in HIGH_DEPTH_MODES:
        image = scaled_to_8_bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        flattened = Image.new("RGB", rgba.size, BACKGROUND)
        flattened.paste(rgba, mask=rgba.getchannel("A"))
        return flattened
    return image.convert("RGB")


def scaled_to_8_bit(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16"):  # the common case, in integers: 65535 -> 255, rounded
        pixels = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((pixels * 255 + 32767) // 65535).astype(np.uint8))
    pixels = np.asarray(image, dtype=np.float32)
    scaled = np.clip(pixels * (255.0 / white_level(image.mode, pixels)) + 0.5, 0.0, 255.0)
    return Image.fromarray(scaled.astype(np.uint8))


def white_level(mode: str, pixels: np.ndarray) -> float:
    """The value that means white: the type's full range, or the smallest that holds the data."""
    if mode.startswith("I;16"):
        return 65535.0
    peak = float(pixels.max(initial=0.0))
    levels = (1.0, 255.0, 65535.0) if mode == "F" else (255.0, 65535.0)
    return next((level for level in levels if peak <= level), peak)
