"""Exception classes a user can act on; each maps to a documented exit code."""
from __future__ import annotations


class BatchError(Exception):
    """Base class for every error the jobs report without a traceback."""

    exit_code = 1


class ConfigurationError(BatchError):
    """A setting is missing or malformed."""

    exit_code = 2


class InputError(BatchError):
    """The raw input cannot be read as the data contract describes."""

    exit_code = 3


class InputNotFoundError(InputError):
    """The input path does not exist or holds no Parquet file."""


class MissingColumnError(InputError):
    """A required column is absent from every input file."""


class IncompatibleColumnTypeError(InputError):
    """A column is stored with a type that cannot be converted to the contract's type."""


class CorruptInputFileError(InputError):
    """A Parquet file cannot be read (truncated, not Parquet, unreadable)."""


class EmptyInputError(InputError):
    """The input holds no reading that can be analysed or downloaded."""


class PublishError(BatchError):
    """Publishing to PostgreSQL failed; the previous results are untouched."""

    exit_code = 4


class DownloadError(BatchError):
    """Writing the export file failed; the previous file is untouched."""

    exit_code = 5
