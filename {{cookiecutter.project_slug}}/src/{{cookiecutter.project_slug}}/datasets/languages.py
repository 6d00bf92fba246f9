"""Which language a message is in: the interface messages of Django (a web framework) in
English and eight of its translations, written by its translators and shipped inside the
installed package (no download). A message found in several languages is left out; validation
is carved per language by --val-fraction and --seed."""

import gettext
from pathlib import Path

from ..data.text_datasets import encoded_splits, text_spec
from ..data.text_files import carve_validation
from . import DatasetInfo, register

TRANSLATIONS = ("de", "es", "fr", "it", "nl", "pl", "pt", "sv")
LANGUAGES = ("en", *TRANSLATIONS)


def catalogs(language: str) -> list[Path]:
    import django  # imported when used: only this dataset needs it

    root = Path(django.__file__).parent
    return sorted(root.glob(f"**/locale/{language}/LC_MESSAGES/django.mo"))


def messages() -> list[tuple[str, str]]:
    """(message, language) pairs, each message in one language only, in a stable order."""
    found: dict[str, set[str]] = {}
    for language in TRANSLATIONS:
        for catalog in catalogs(language):
            with open(catalog, "rb") as file:
                entries = gettext.GNUTranslations(file)._catalog.items()
            for source, translation in entries:
                if isinstance(source, str) and source and translation.strip():
                    found.setdefault(translation.strip(), set()).add(language)
                    found.setdefault(source.strip(), set()).add("en")
    return sorted(
        (text, languages.pop()) for text, languages in found.items() if len(languages) == 1
    )


def build(config, augment: bool, recorded_split: dict | None, trained_spec=None):
    train, val = carve_validation(messages(), config.val_fraction, config.seed)
    spec = text_spec(config, LANGUAGES, [text for text, _ in train], trained_spec)
    return encoded_splits({"train": train, "val": val}, spec), spec


def class_names(config) -> list[str]:
    return list(LANGUAGES)


register(
    DatasetInfo(
        "languages",
        task="text_classification",
        build=build,
        class_names=class_names,
    )
)
