"""The run directory: one writer at a time, pgrad's own files, nothing left behind.

A run holds an exclusive lock on ``RUN_DIR/.pgrad.lock`` (``flock``: the kernel drops it when the
process dies, even by SIGKILL) from before its first write to its last, so a second
``pgrad train --resume`` or ``--overwrite`` of a directory being written gets a clear error naming
the holder's pid instead of interleaving its rows. ``--overwrite`` removes the files pgrad writes
(not the user's own), and temp files of writes interrupted by a kill are removed on the next start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

LOCK_FILE = ".pgrad.lock"
# What a run writes; --overwrite removes exactly these (and interrupted writes' temp files)
RUN_FILES = (
    "config.json",
    "progress.csv",
    "timing.csv",
    "model.safetensors",
    "agent.json",
    "eval.json",
    "eval.csv",
    "best_model.safetensors",
    "best_agent.json",
    "tracking.json",
    "curve.png",
    "checkpoint.safetensors",
)
EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's
TEMP_FILES = ".*.tmp"  # atomic_write's temp files (.NAME.RANDOM.tmp)


class RunDirBusy(ValueError):
    """Another process is writing this run directory."""


class RunDirLock:
    """An exclusive, non-blocking lock on a run directory, held until :meth:`release`."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): runs are not protected from a second writer
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"run directory {str(self.path.parent)!r} is being written by another pgrad process (pid {holder}); "
                "wait for it to end or stop it, or choose another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def open_run_dir(run_dir: Path, overwrite: bool) -> tuple[RunDirLock, bool]:
    """Create (or reuse, with ``overwrite``) ``run_dir`` and lock it; returns ``(lock, created)``.

    Raises ``ValueError`` naming the path when it is a file, cannot be created or written, is
    another run's (without ``overwrite``) or is locked by a running process."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} is invalid: it exists and is not a directory")
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"run directory {str(run_dir)!r} cannot be created: {e.strerror or e}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ValueError(f"run directory {str(run_dir)!r} is not writable")
    try:
        lock = RunDirLock(run_dir).acquire()
    except OSError as e:
        discard_run_dir(run_dir, created)
        raise ValueError(f"run directory {str(run_dir)!r} cannot be written: {e.strerror or e}") from None
    if not overwrite and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        lock.release()
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already exists and is not empty; pass --overwrite "
            "(overwrite=True) to reuse it, or choose another --run-dir"
        )
    return lock, created


def remove_run_files(run_dir: Path, everything: bool = True) -> None:
    """Remove what an earlier run wrote (``everything``) or only interrupted writes' temp files."""
    paths = list(run_dir.glob(TEMP_FILES))
    if everything:
        paths += [run_dir / name for name in RUN_FILES] + list(run_dir.glob(EVENT_FILES))
    for path in paths:
        path.unlink(missing_ok=True)


def discard_run_dir(run_dir: Path, created: bool) -> None:
    """After a failed start: remove the directory if this start created it (it holds only what
    the start wrote), else leave the user's directory as it was."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
