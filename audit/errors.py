"""Typed errors for bad runs. The CLI turns each into one line and a non-zero exit, in one place.

Bad *rows* never raise: they get a quarantine reason. These are for bad *runs*: a missing file, a
missing column, an invalid config or rule, weights that cannot be loaded.
"""


class AuditError(Exception):
    """A run cannot start or go on; ``str(err)`` is the one line shown to the user."""

    exit_code = 2


class InputFileError(AuditError):
    """An input path is missing, unreadable or of an unknown format."""


class MissingColumnError(AuditError):
    """A shard lacks a column its format requires."""


class DuplicateColumnError(AuditError):
    """Two columns of a shard match one input field (same name, or names equal ignoring case)."""


class ColumnTypeError(AuditError):
    """A shard's column has an Arrow type the format does not allow."""


class OutputPathError(AuditError):
    """An output folder (--out) cannot be used: it, or a folder above it, is an existing file."""


class ConfigError(AuditError):
    """The config has an unknown key or an invalid value."""


class RuleError(AuditError):
    """A flagging rule is invalid."""


class ModelLoadError(AuditError):
    """Model weights could not be loaded and the config does not allow a substitute."""


class EmbeddingMismatchError(AuditError):
    """Precomputed embeddings come from another model, or have another dimension, than the config's."""


class ShardsFailedError(AuditError):
    """Some shards failed after their retries; the others finished."""

    exit_code = 3
