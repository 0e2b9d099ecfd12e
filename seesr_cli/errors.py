"""Typed errors. Each carries a one-line, actionable message; the CLI maps them to exit codes."""

from __future__ import annotations

import os


class SeesrError(Exception):
    """Base of every error seesr-cli raises on purpose."""

    exit_code = 1


class UsageError(SeesrError):
    """Bad options or settings (a value out of range, an unknown choice): the user's command was wrong."""

    exit_code = 2


class InternalError(SeesrError):
    """An invariant of our own code does not hold: a bug in seesr-cli, never the user's input."""


class InputImageError(SeesrError):
    """One input image cannot be used (unreadable, corrupt, unsupported). The batch goes on."""

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class OutputExistsError(SeesrError):
    """The destination exists and overwriting was not allowed."""

    def __init__(self, path: os.PathLike | str):
        self.path = str(path)
        super().__init__(f"{self.path}: already exists (use --overwrite to replace it)")


class OutputWriteError(SeesrError):
    """The result could not be written (disk full, permission denied, ...). Nothing was left behind."""

    def __init__(self, path: os.PathLike | str, cause: str):
        self.path, self.cause = str(path), cause
        super().__init__(f"{self.path}: cannot write: {cause}")


class WeightsError(SeesrError):
    """A checkpoint is missing, unverifiable or malformed."""


class UnsafeCheckpointError(WeightsError):
    """A pickle holds something other than tensors and plain containers."""


class ModelLoadError(SeesrError):
    """The models could not be loaded: every image would fail alike, so a batch stops."""


class DeviceOutOfMemory(SeesrError):
    """Raised (or translated from the backend's OOM) when a tile batch does not fit."""


class NonFiniteOutput(SeesrError):
    """A reduced-precision run produced NaN or inf."""


class Cancelled(SeesrError):
    """The user stopped the run (Ctrl-C); raised between steps."""

    exit_code = 130


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for the cause in an error message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
