"""Evaluation: SR metrics for every trained variant and the bicubic baseline, comparison
pictures, the offline HTML report, DVC metrics/plots and MLflow logging (see `stage`)."""
from gensr.errors import UserError


class MissingInputError(UserError, FileNotFoundError):
    """Something the stage reads is absent: the prepared split, a benchmark folder, a model file."""


class BadInputError(UserError, ValueError):
    """Something the stage reads or is told is unusable: a setting, a metrics file, an LPIPS model."""
