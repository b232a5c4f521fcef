"""Safe file output: atomic writes and the output-directory lock. Nothing here imports torch."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cardgen.errors import OutputError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename.

    A reader never sees a half-written file, and a crash leaves the old file (or none) in place.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}", "choose a writable --output directory") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def output_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory/.cardgen.lock`` for the duration; a second run into the same directory fails clearly.

    The lock is an exclusive ``flock`` on the file, so a killed process releases it automatically.
    """
    import fcntl

    lock_path = directory / ".cardgen.lock"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError as exc:
        raise OutputError(f"cannot write to {directory}: {exc.strerror}",
                          "choose a writable --output directory") from exc
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        fh.close()
        raise OutputError(
            f"another cardgen run is writing to {directory}",
            "wait for it to finish or choose another --output directory",
        ) from exc
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        # Unlink before unlocking, so a waiting run never locks a file that is about to vanish.
        with contextlib.suppress(OSError):
            lock_path.unlink()
        fh.close()


def is_locked(directory: Path) -> bool:
    """Whether a running cardgen holds ``directory``'s lock (a quick check before any work; never waits)."""
    import fcntl

    lock_path = Path(directory) / ".cardgen.lock"
    try:
        fh = open(lock_path)  # noqa: SIM115 - closed below; opening read-only never creates the file
    except OSError:
        return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        fh.close()
    return False
