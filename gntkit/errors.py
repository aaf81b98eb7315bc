"""Errors that gntkit raises on bad input.

Every error carries one sentence that names the file, the byte offset or record,
what was expected and what was found. The CLI prints that sentence alone (no
traceback) and exits with code 2.
"""

from __future__ import annotations


class GntkitError(ValueError):
    """Bad input or a failed check: the message is one sentence meant for a person."""


class FormatError(GntkitError):
    """A file's bytes do not follow the layout they are read as.

    Attributes:
        path: the file (or `archive.zip:member`) that was read.
        offset: byte offset of the problem inside that file, or None.
        expected: what the layout requires there.
        found: what the bytes say instead.
    """

    def __init__(self, path: str, offset: int | None, expected: str, found: str):
        self.path = str(path)
        self.offset = offset
        self.expected = expected
        self.found = found
        where = f"{self.path} at byte {offset}" if offset is not None else self.path
        super().__init__(f"{where}: expected {expected}, found {found}.")


class CharsetError(GntkitError):
    """A character or tag code is outside the chosen charset, or a charset file is bad."""


class OutputExistsError(GntkitError):
    """An output (folder, shard or index file) already exists and overwriting was not asked for."""


class MissingDependencyError(GntkitError):
    """An optional dependency is needed for this operation and is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f"run `pip install 'gntkit[{extra}]'` (or `pip install {package}`)."
        )


def require(module: str, extra: str, purpose: str):
    """Import an optional heavy dependency, or raise MissingDependencyError naming the fix.

    Args:
        module: importable module name, e.g. "h5py".
        extra: the gntkit extra that installs it, e.g. "h5py".
        purpose: what needs it, e.g. "Writing HDF5 shards".

    Returns:
        The imported module.
    """
    import importlib
    import os
    import sys

    quiet = module == "tensorflow" and module not in sys.modules
    if quiet:
        # TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) drowns our messages.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if quiet:
            with _stderr_silenced():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:  # only a missing package, not errors inside it
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from None


class _stderr_silenced:
    """Point file descriptor 2 at /dev/null for a moment (C++ libraries write there directly)."""

    def __enter__(self):
        import os
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False
