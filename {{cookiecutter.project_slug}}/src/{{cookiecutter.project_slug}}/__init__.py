"""Train, evaluate, predict with and export {{ cookiecutter.task | replace("_", " ") }} models."""

__version__ = "{{ cookiecutter.version }}"
