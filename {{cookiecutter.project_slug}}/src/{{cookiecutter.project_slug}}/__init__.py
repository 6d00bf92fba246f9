"""Training, evaluation and export for the {{ cookiecutter.project_slug }} image classifiers."""

__version__ = "{{ cookiecutter.version }}"
