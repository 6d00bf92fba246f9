"""predict's side of image classification. The files it reads: images as given, folders'
images (recursively, hidden folders skipped) and list files' paths, each read and transformed
as evaluation reads a photo. The rows it writes: each image's top classes by probability."""

from pathlib import Path

import torch

from ...data.class_folders import files_under
from ...data.image_datasets import ImageFileDataset
from ...data.image_files import IMAGE_EXTENSIONS, is_image_file, load_rgb
from ...data.spec import DataSpec
from ...data.transforms import decode_min_side, image_file_transform
from ...errors import UserError, first_line
from ..base import PredictInputs


def image_inputs(sources: list[Path], spec: DataSpec) -> PredictInputs:
    paths, ignored = image_paths(sources)
    return PredictInputs(paths, ignored, ImageFiles(paths, spec))


def image_paths(sources: list[Path]) -> tuple[list[Path], list[Path]]:
    """The files to predict, in order: images as given, each folder's images (recursively, in
    sorted order) and the paths each list file names; and the folders' other files."""
    paths, ignored = [], []
    for source in sources:
        if not source.exists():
            raise UserError(
                f"{source} does not exist: give image files, folders of images or list files"
            )
        if source.is_dir():
            images, others = folder_files(source)
            paths += images
            ignored += others
        elif is_image_file(source):
            paths.append(source)
        else:
            paths += listed_paths(source)
    return paths, ignored


def folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files and skipped hidden folders) under `folder`, in sorted order."""
    files, hidden = files_under(folder)
    images = [path for path in files if is_image_file(path)]
    if not images:
        raise UserError(
            f"folder {folder} has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}): "
            "give a folder that holds images"
        )
    return images, sorted([path for path in files if not is_image_file(path)] + hidden)


def listed_paths(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(
            f"{list_file} is neither an image file ({', '.join(sorted(IMAGE_EXTENSIONS))}) nor a "
            "text file listing image paths: give images, folders or list files"
        ) from None
    except OSError as error:
        raise UserError(f"cannot read {list_file} ({error.strerror}): check the file") from None
    entries = [line.strip() for line in lines]
    paths = [
        list_file.parent / Path(entry).expanduser()
        for entry in entries
        if entry and not entry.startswith("#")
    ]
    if not paths:
        raise UserError(f"list file {list_file} names no files: write one image path per line")
    return paths


class ImageFiles(ImageFileDataset):
    """Each file as the model's input, or why it cannot be read (predict skips those files)."""

    def __init__(self, paths: list[Path], spec: DataSpec) -> None:
        samples = [(path, 0) for path in paths]
        transform = image_file_transform(spec)
        super().__init__(samples, transform, skip_bad_images=False, min_side=decode_min_side(spec))

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        path = self.samples[index][0]
        try:
            image = load_rgb(path, self.min_side)
        except Exception as error:  # Pillow raises many types for broken files
            return None, first_line(error)
        return self.transform(image), ""
