"""User-facing errors.

Everything a user can get wrong (config, CLI arguments, data files, model directories, HTTP input)
raises a :class:`PolyheadError` whose message is one line: what is wrong, where, and what is valid.
The CLI prints that line and exits with status 2; ``assert`` is kept for invariants that only a bug
can break.
"""

from __future__ import annotations


class PolyheadError(Exception):
    """Base class for errors caused by user input; the message is shown to the user as is."""


class ConfigError(PolyheadError):
    """A config file or override is invalid."""


class DataError(PolyheadError):
    """A data file can't be read or holds invalid examples."""


class ModelDirError(PolyheadError):
    """A model directory or model name can't be loaded."""
