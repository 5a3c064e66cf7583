"""The one domain error type and its subclasses.

Library code raises these; the CLI turns any :class:`LtagError` into a red one-line message and
exit code 1 (tracebacks only with ``--debug``). Messages say what is wrong and, where possible,
how to fix it.
"""

from __future__ import annotations


class LtagError(Exception):
    """Base class of every error ltag reports to a user."""


class BundleError(LtagError):
    """A model bundle is missing, incomplete or inconsistent."""


class CatalogError(LtagError):
    """The catalog cannot be opened, read or updated."""


class UnsupportedImageError(LtagError):
    """A file cannot be decoded as a photo."""


class MetadataError(LtagError):
    """A file's metadata cannot be parsed or safely rewritten."""


class MetadataWriteError(MetadataError):
    """Keywords could not be written to a file (the file is left as it was)."""


class UndoError(LtagError):
    """A recorded change cannot be undone safely."""


class RenameError(LtagError):
    """A rename plan is unsafe or a rename batch cannot proceed."""
