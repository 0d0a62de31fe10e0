"""User-facing errors: one line that names the file (or name) and the fix; the CLI prints them without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error caused by the user's input or environment; printed as one line, exit code 2."""

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """An unknown method, dataset or spec key; the message lists the closest known names."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known[:12])}"
        super().__init__(f"unknown {kind} '{name}': {hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(BenchError):
    """Bad or missing data on disk (split list, frame folder, corrupt image)."""


class StorageError(BenchError):
    """A directory the command writes cannot take a file: read-only file system or no write permission."""


class DiskFullError(StorageError):
    """No space left (or quota exceeded) where a file goes; the file's previous version is intact."""


class LockHeldError(BenchError):
    """Another live process holds the run directory. Exit code 3, so a sweep tells 'someone else is computing this
    run' from a failure."""

    exit_code = 3


_WORKER_PREFIX = "Caught "


def from_worker(e: BenchError) -> BenchError:
    """A BenchError raised in a DataLoader worker comes back as 'Caught DataError in DataLoader worker process 0.
    Original Traceback ...'; rebuild the same error with only its own one-line message."""
    text = str(e)
    if not text.startswith(_WORKER_PREFIX) or "Original Traceback" not in text:
        return e
    last = text.rstrip().splitlines()[-1]
    name = f"{type(e).__module__}.{type(e).__qualname__}: "
    return type(e)(last[len(name):] if last.startswith(name) else last)
