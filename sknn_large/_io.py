"""Small file helpers shared by checkpoints and model files.

Writes are atomic: the bytes go to a temporary file in the target's folder,
are flushed to disk, and the temporary is renamed over the target. The
temporary's name carries the writer's host and process id
(``.NAME.HOST.PID.RANDOM.tmp``), so a temporary left by a writer that was
killed (``kill -9``, power loss) is recognised as stale and removed by the
next write to the same target; one whose writer still runs is left alone.

Reads open regular files only: a FIFO would block a reader for ever and a
device such as ``/dev/zero`` has no end.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import socket
import stat


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: a crash leaves the old file whole.

    Temporaries left in the folder by earlier, killed writes to ``path`` are
    removed first (see the module's notes).
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(path)
    tmp = os.path.join(folder, f".{name}.{_writer_tag()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask set the mode, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _host() -> str:
    # Dots separate the name's fields; keep the host name to a safe alphabet.
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def _writer_tag() -> str:
    return f"{_host()}.{os.getpid()}"


def remove_stale_temporaries(path) -> list[str]:
    """Remove temporaries of ``path`` whose writer on this host has died.

    Parameters
    ----------
    path : str or os.PathLike
        The target of :func:`atomic_write`.

    Returns
    -------
    list of str
        The paths removed.

    Notes
    -----
    A temporary is removed only when its name says it was written on this
    host by a process id that no longer exists, so a write in progress (in
    this process or another) is never disturbed. Temporaries from other hosts
    sharing the folder are left to those hosts.
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = re.compile(re.escape(f".{name}.{_host()}.") + r"(\d+)\.[0-9a-f]{8}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue  # gone already, or not ours to remove
        removed.append(entry.path)
    return removed


def _alive(pid: int) -> bool:
    # On Windows os.kill(pid, 0) sends CTRL_C_EVENT instead of probing: there,
    # every writer counts as alive and nothing is removed.
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:
        # EPERM: the process exists under another user. Anything else: keep it.
        return exc.errno != errno.ESRCH
    except (OverflowError, ValueError):
        return False  # not a process id this system could have
    return True


def open_regular(path) -> tuple[int, int]:
    """Open ``path`` for reading if it is a regular file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to open. Symbolic links are followed.

    Returns
    -------
    fd : int
        A file descriptor opened for reading; the caller closes it.
    size : int
        The file's size in bytes when opened.

    Raises
    ------
    IsADirectoryError
        If ``path`` is a folder.
    NotARegularFileError
        If ``path`` is a FIFO, a socket or a device.
    OSError
        If it cannot be opened (missing, no permission).
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFileError(
                f"{os.fspath(path)!r} is not a regular file (a FIFO, socket or"
                " device): only regular files are read."
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_exactly(fd: int, n: int) -> bytes:
    """Read ``n`` bytes from ``fd``, fewer only if the file ends first."""
    # One read usually does it, with no second copy; a system may cap a read
    # (Linux at 2 GiB), so the rest, if any, is read in chunks and joined.
    first = os.read(fd, n) if n > 0 else b""
    if len(first) == n or not first:
        return first
    chunks, left = [first], n - len(first)
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class NotARegularFileError(ValueError):
    """The path names a FIFO, socket or device, which is never read."""


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
