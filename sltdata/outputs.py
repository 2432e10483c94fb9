"""Output directories: never the input, replaced only when recognisably ours, one writer at a time.

Every command that writes a directory (ingest, shard, export-hf, extract, train, quickstart) goes
through here, because each of these once went wrong in a way that destroys data or mixes runs:

- ``ingest D --out D --overwrite`` deleted the publisher's dataset (and ``--out PARENT`` its parent):
  ``check_apart`` refuses an output that is, contains or lies inside an input (symlinks resolved);
- ``--overwrite`` removed whatever directory it was given: ``replace`` empties a directory only when
  it holds the marker file of what the command writes (``store.json``, ``index.json``...);
- two ``shard`` runs into one directory both reported success and left shards that fail ``verify``:
  ``writing`` holds a lock file (``.sltdata.lock``, the holder's pid and host) for the whole run;
  a second run fails at once naming the holder, and a lock whose process is gone is taken over
  with a warning (a killed run must not block its own re-run);
- a full disk or a read-only output was a 40-line traceback: ``writing`` turns the OS errors of a
  disk (no space, quota, read-only, permission, file too large) into one ``OutputError`` naming the
  path. Every writer here writes under a temporary name and renames, so a re-run after the fault
  continues where it stopped.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from sltdata.errors import SltdataError

log = logging.getLogger(__name__)

LOCK_FILE = ".sltdata.lock"
# OS errors that say "this place cannot take the output", not "sltdata has a bug"
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


class OutputError(SltdataError):
    """An output directory that must not be written (it is the input, someone else's data, locked
    by another run) or cannot be (full, read-only)."""


def check_apart(out: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs`` (paths resolved, so a
    symlink to the input is the input)."""
    o = Path(out).resolve()
    for given in inputs:
        i = Path(given).resolve()
        if o == i:
            raise OutputError(f"{out}: is the input {given}; choose another --out")
        if i.is_relative_to(o):
            raise OutputError(f"{out}: contains the input {given}; choose another --out")
        if o.is_relative_to(i):
            raise OutputError(f"{out}: lies inside the input {given}; choose an --out outside it")


def entries(out: Path) -> list[Path]:
    """What ``out`` holds besides a lock file (nothing when it does not exist)."""
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if p.name != LOCK_FILE]


def is_ours(out: Path, markers: Iterable[str] = (), only: Iterable[str] | None = None) -> bool:
    """Whether ``out`` is recognisably a directory this command wrote: it holds one of ``markers``
    (relative paths), or every entry is one of ``only``."""
    if any((out / m).exists() for m in markers):
        return True
    return only is not None and {p.name for p in entries(out)} <= set(only)


def refuse_not_empty(out: Path, what: str, markers: Iterable[str] = (), only: Iterable[str] | None = None) -> None:
    """The error for a non-empty ``out`` the command will not write into; it suggests ``--overwrite``
    only where ``--overwrite`` would act."""
    if is_ours(out, markers, only):
        raise OutputError(f"{out}: already holds {what}; choose another --out or pass --overwrite")
    raise OutputError(f"{out}: exists, is not empty and is not {what}; choose another --out "
                      f"(--overwrite only replaces {what})")


def check_writable(out: str | Path, what: str, markers: Iterable[str] = (), only: Iterable[str] | None = None,
                   overwrite: bool = False) -> None:
    """Refuse, deleting nothing, unless ``out`` is missing, empty, or (with ``overwrite``) ours."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, not {what}; choose another --out")
    if not entries(out):
        return
    if not overwrite:
        refuse_not_empty(out, what, markers, only)
    if not is_ours(out, markers, only):
        why = f"no {', '.join(markers)}" if markers else f"it holds more than {', '.join(sorted(only or ()))}"
        raise OutputError(f"{out}: is not {what} ({why}), so sltdata will not delete it; choose another --out")


def replace(out: str | Path, what: str, markers: Iterable[str] = (), only: Iterable[str] | None = None) -> None:
    """``--overwrite``: empty ``out`` (its lock file kept) when it is missing, empty or ours;
    otherwise refuse with one line saying why, and delete nothing."""
    out = Path(out)
    check_writable(out, what, markers, only, overwrite=True)
    for p in entries(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# ---------------------------------------------------------------------------------------------- lock

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as a holder we cannot judge


def _held_by(holder: dict) -> str | None:
    """A description of a live holder, or None when the lock is stale (its process is gone)."""
    pid, host = holder.get("pid"), holder.get("host")
    who = f"{holder.get('command', 'sltdata')} (pid {pid} on {host}, since {holder.get('started', '?')})"
    if not isinstance(pid, int) or host != socket.gethostname():
        return who  # another machine (or garbage): cannot tell whether it runs
    return who if _alive(pid) else None


def _create(path: Path, record: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
    return True


def acquire(out: Path, command: str) -> Path:
    """Create ``out`` (and parents) and its lock file, or fail at once naming the live holder."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for _ in range(3):  # a lost race for a stale lock is retried, then reported
        if _create(path, record):
            return path
        holder = _read_lock(path)
        who = _held_by(holder)
        if who is not None:
            raise OutputError(f"{out}: locked by another run, {who}; wait for it to finish, or remove "
                              f"{path} if that process is not running")
        # stale: move it aside, and take it over only if what moved is what was judged stale
        aside = path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            continue
        moved = _read_lock(aside)
        if moved != holder:  # another run took it over meanwhile: put its lock back
            os.replace(aside, path)
            continue
        aside.unlink()
        log.warning("%s: taking over a stale lock of pid %s on %s (that process is gone)", out,
                    holder.get("pid"), holder.get("host"))
    raise OutputError(f"{out}: another run keeps taking the lock {path}")


def release(path: Path) -> None:
    """Remove the lock if it is still this process's own."""
    if _read_lock(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- faults

RERUN = "re-run the same command to continue"


def disk_error(e: OSError, out: Path, hint: str = RERUN) -> OutputError | None:
    """One line for an OS error of the disk under ``out`` (None for anything else: a bug stays visible)."""
    code = e.errno
    if code is None and "No space left on device" in str(e):  # pyarrow's IO errors carry no errno
        code = errno.ENOSPC
    if code not in DISK_ERRNOS:
        return None
    reason = os.strerror(code)
    return OutputError(f"{e.filename or out}: {reason}; free space or fix permissions, then {hint}")


@contextmanager
def faults_as_errors(out: str | Path, hint: str = RERUN) -> Iterator[None]:
    """Disk faults while writing ``out`` become one ``OutputError`` naming the path (the file when
    the error knows it, else ``out``); ``hint`` says how to go on."""
    try:
        yield
    except OSError as e:
        err = disk_error(e, Path(out), hint)
        if err is None:
            raise
        raise err from None


@contextmanager
def writing(out: str | Path, command: str) -> Iterator[Path]:
    """The whole write of ``command`` into ``out``: locked, disk faults as one line."""
    out = Path(out)
    with faults_as_errors(out):
        lock = acquire(out, command)
        try:
            yield out
        finally:
            release(lock)
