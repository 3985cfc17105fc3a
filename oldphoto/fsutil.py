"""File-system helpers shared by every writer: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _read_umask() -> int:
    """The process umask (read once: setting it back and forth is not thread-safe later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of every file we write: what ``open()`` would give a new file (0o644 under umask 022).
#: ``mkstemp`` creates its temp file 0o600, which the rename would otherwise carry over.
FILE_MODE = 0o666 & ~_read_umask()


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed onto ``dest``.

    The temp file lives in the destination folder so the final ``os.replace`` is atomic;
    on any exception it is removed, so a reader never sees a half-written file.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def remove_stale_parts(dest: Path | str) -> int:
    """Remove temp files :func:`atomic_path` left beside ``dest`` when its process was killed; return how many.

    A killed process (SIGKILL, a lost node) cannot run the clean-up above. Only call this
    when no writer of ``dest`` can still be running, e.g. before a run starts.
    """
    dest = Path(dest)
    removed = 0
    for tmp in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


def atomic_write_bytes(dest: Path | str, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks so large checkpoints stay cheap."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def probe_writable(folder: Path | str) -> None:
    """Raise OSError unless files can be written in ``folder``, or ``folder`` can be created.

    Tried for real, as :func:`atomic_path` will do it (permissions, read-only mounts, quotas
    and root's exemptions all answer the way they will then): a temp file made and removed
    in ``folder``, or, when it does not exist yet, a temp folder made and removed in its
    nearest existing ancestor. Nothing is left behind and no folder is created.
    """
    folder = Path(folder)
    here = folder
    while not here.exists() and here.parent != here:
        here = here.parent
    if not here.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{here} is not a folder", str(here))
    if here == folder:
        fd, probe = tempfile.mkstemp(prefix=".oldphoto-", suffix=".probe", dir=here)
        os.close(fd)
        os.unlink(probe)
    else:
        os.rmdir(tempfile.mkdtemp(prefix=".oldphoto-", suffix=".probe", dir=here))
