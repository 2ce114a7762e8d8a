"""The on-disk cache of compiled code, verified before anything is loaded.

A cached object file is machine code the next process jumps into, and a
cached ``.py`` module is source it executes: the cache is a code-execution
boundary, and everything read from it is checked before it reaches LLVM or
the importer. A file that fails a check is removed and the code compiled
again in memory, with a one-line warning naming the file; never a crash, a
hang or a wrong number.

The directory (``$SYMGRAD_CACHE_DIR`` with ``~`` expanded, else
``$XDG_CACHE_HOME/symgrad`` or ``~/.cache/symgrad``) is created ``0700``. It
is used only when it is a directory owned by this user and not writable by
group or others; otherwise (or when it cannot be created, read or written)
compiling works in memory only, with one warning per process.

Entries (:func:`load`, :func:`store`) are files of the form::

    b"SGCACHE\\x01" | HMAC-SHA256(secret, name + b"\\0" + payload) | payload

The secret is 32 random bytes in ``<dir>/.symgrad-key`` (``0600``, created
once, atomically, without replacing an existing one). A damaged, truncated,
planted or patched file, or another entry copied over this one, fails the
tag without the key. Reads open with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink
or a FIFO never blocks or redirects a read) and ``fstat`` must show a
regular file owned by this user, not group/other-writable, below
:data:`MAX_BYTES`. Writes go to a fresh ``mkstemp`` file in the directory
(``O_EXCL | O_NOFOLLOW``, ``0600``), are ``fsync``-ed and ``os.replace``-d
over the entry (a rename replaces a planted symlink, never writes through
it); on any error the temporary file is removed.

What this does not cover: a process running as the same user can read the
key, so the tag detects damage and foreign files, not a same-user
adversary (who could also edit the installed package). Numba's own cache
files (pickles beside the ``.py`` modules, see :mod:`compiler.sourceload`)
are Numba's format: they get the directory checks, and a corrupt one is
discarded and recompiled, but their contents are not authenticated.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import hmac
import os
import stat
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["CacheWarning", "MAX_BYTES", "cache_dir", "load", "read_file", "scratch_dir", "seal",
           "store", "unseal", "write_file"]

MAGIC = b"SGCACHE\x01"
"""File signature and format version of cache entries."""
MAX_BYTES = 1 << 30
"""The largest cache file read (1 GiB): anything bigger is not ours."""
_TAG = 32
_KEY_NAME = ".symgrad-key"

_LOCK = threading.Lock()
_DIRS: dict = {}      # configured path -> (usable path or None, secret or None)
_WARNED: set = set()  # (directory, problem): each warned once per process
_SCRATCH: list = []


class CacheWarning(UserWarning):
    """The disk cache could not be used or held a bad file; code was compiled in memory."""


def _warn_once(where: str, problem: str, fix: str) -> None:
    with _LOCK:
        if (where, problem) in _WARNED:
            return
        _WARNED.add((where, problem))
    warnings.warn(f"symgrad cache {where}: {problem}; {fix}", CacheWarning, stacklevel=3)


def _configured() -> Path:
    env = os.environ.get("SYMGRAD_CACHE_DIR")
    if env:
        return Path(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symgrad"


def _owned_private(st: os.stat_result) -> str | None:
    """Why a stat result is not ours alone, or None."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not this user"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _open_directory(path: Path) -> tuple:
    """``(path, secret)`` when the directory is usable, else ``(None, None)`` (warned)."""
    where = str(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass                           # not a directory: reported below
    except OSError as exc:
        _warn_once(where, f"cannot be created ({exc.strerror or exc})",
                   "compiling in memory only; set SYMGRAD_CACHE_DIR to a writable directory")
        return None, None
    try:
        st = os.stat(path)
    except OSError as exc:
        _warn_once(where, f"cannot be read ({exc.strerror or exc})",
                   "compiling in memory only; set SYMGRAD_CACHE_DIR to a usable directory")
        return None, None
    if not stat.S_ISDIR(st.st_mode):
        _warn_once(where, "is not a directory",
                   "compiling in memory only; remove it or set SYMGRAD_CACHE_DIR elsewhere")
        return None, None
    problem = _owned_private(st)
    if problem:
        _warn_once(where, problem, "refusing to load code from it (compiling in memory only); "
                   "use a directory only you can write (chmod 700)")
        return None, None
    secret = _secret(path)
    return (path, secret) if secret else (None, None)


def _secret(path: Path) -> bytes | None:
    key = path / _KEY_NAME
    for _ in range(3):
        data, problem = _read(key, 64)
        if data is not None and len(data) == _TAG:
            return data
        if data is not None or problem not in ("missing",):
            _discard(key, f"cache key {problem or 'has the wrong size'}")
        fresh = os.urandom(_TAG)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".symgrad-key.", suffix=".tmp", dir=path)
        except OSError as exc:
            _warn_once(str(path), f"is not writable ({exc.strerror or exc}) and has no key",
                       "compiling in memory only; make it writable or set SYMGRAD_CACHE_DIR")
            return None
        try:
            _write_all(fd, fresh)
            os.close(fd)
            fd = -1
            os.link(tmp, key)          # atomic, and never replaces a key another process made
        except FileExistsError:
            pass                       # another process won: read its key
        except OSError as exc:
            _warn_once(str(path), f"cannot store its key ({exc.strerror or exc})",
                       "compiling in memory only; free space or set SYMGRAD_CACHE_DIR")
            return None
        finally:
            if fd >= 0:
                os.close(fd)
            _unlink_quiet(tmp)
    _warn_once(str(path), "its key file keeps failing checks",
               f"compiling in memory only; delete {key}")
    return None


def cache_dir() -> Path | None:
    """The usable cache directory, or None (then compile in memory; warned once).

    Examples
    --------
    >>> d = cache_dir()
    >>> d is None or d.is_dir()
    True
    """
    path = _configured()
    with _LOCK:
        hit = _DIRS.get(str(path))
    if hit is None:
        hit = _open_directory(path)
        with _LOCK:
            _DIRS[str(path)] = hit
    return hit[0]


def scratch_dir() -> Path:
    """A private directory for this process (``0700``, removed at exit), for files
    that must exist on disk (Numba modules) when the cache is unusable."""
    with _LOCK:
        if not _SCRATCH:
            import shutil

            path = Path(tempfile.mkdtemp(prefix="symgrad-"))
            atexit.register(shutil.rmtree, path, True)
            _SCRATCH.append(path)
        return _SCRATCH[0]


def _unlink_quiet(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _discard(path: Path, why: str) -> None:
    """Warn about a bad cache entry and remove it (the entry itself: a symlink is
    removed, never its target; directories are left alone)."""
    warnings.warn(f"symgrad cache file {path} {why}; removed it and compiled again",
                  CacheWarning, stacklevel=4)
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _read(path: Path, limit: int) -> tuple:
    """``(bytes, None)``, or ``(None, problem)`` with problem ``"missing"`` for no file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "is a symbolic link"
        return None, f"cannot be opened ({exc.strerror or exc})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file"
        problem = _owned_private(st)
        if problem:
            return None, problem
        if st.st_size > limit:
            return None, f"is too large ({st.st_size} bytes)"
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) != st.st_size or os.read(fd, 1):
            return None, "changed while it was read"
        return data, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    finally:
        os.close(fd)


def _tag(secret: bytes, name: str, payload: bytes) -> bytes:
    mac = hmac.new(secret, name.encode("utf-8") + b"\0", hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def _current_secret() -> bytes:
    """The cache directory's key, or (no usable cache) a key for this process only."""
    if cache_dir() is not None:
        return _DIRS[str(_configured())][1]
    with _LOCK:
        if "process" not in _DIRS:
            _DIRS["process"] = (None, os.urandom(_TAG))
        return _DIRS["process"][1]


def seal(name: str, payload: bytes) -> bytes:
    """``payload`` in the verified format, bound to the file name ``name``."""
    return MAGIC + _tag(_current_secret(), name, payload) + payload


def unseal(path: Path, data: bytes) -> bytes | None:
    """The payload of sealed file ``path`` read as ``data``, or None (the file is
    then removed, with a warning naming it)."""
    head = len(MAGIC) + _TAG
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        _discard(path, "is not a symgrad cache file (bad header)")
        return None
    payload = data[head:]
    if not hmac.compare_digest(data[len(MAGIC):head], _tag(_current_secret(), path.name, payload)):
        _discard(path, "failed its integrity check (damaged, or not written here)")
        return None
    return payload


def load(name: str) -> bytes | None:
    """The verified payload of cache entry ``name``, or None (absent, unusable
    cache, or a bad file: then it is removed, with a warning).

    Parameters
    ----------
    name : str
        The entry's file name in the cache directory (a generated identifier
        such as ``symgrad_ll_<hash>.o``); it is part of what the tag covers.
    """
    d = cache_dir()
    if d is None:
        return None
    data = read_file(d / name)
    return None if data is None else unseal(d / name, data)


def store(name: str, payload: bytes) -> Path | None:
    """Write cache entry ``name`` atomically; the path, or None when the cache is
    unusable or the write failed (warned once per problem; nothing left behind)."""
    d = cache_dir()
    if d is None:
        return None
    return write_file(d / name, seal(name, payload))


def read_file(path: Path, limit: int = MAX_BYTES) -> bytes | None:
    """The bytes of a regular file owned by this user (opened without following
    symlinks or blocking), or None; a file that fails the checks is removed
    with a warning."""
    data, problem = _read(path, limit)
    if data is None and problem != "missing":
        _discard(path, problem)
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def write_file(path: Path, data: bytes) -> Path | None:
    """Replace ``path`` with ``data`` atomically (unique ``0600`` temporary file in
    the same directory, ``fsync``, ``os.replace``). Returns ``path``, or None after
    a failure (one warning per problem; the temporary file is removed)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        _warn_once(str(path.parent), f"is not writable ({exc.strerror or exc})",
                   "compiled code is used from memory and not cached")
        return None
    done = False
    try:
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        done = True
        return path
    except OSError as exc:
        _warn_once(str(path.parent), f"could not be written ({exc.strerror or exc})",
                   "compiled code is used from memory and not cached; free space or fix "
                   "the directory")
        return None
    finally:
        if fd >= 0:
            os.close(fd)
        if not done:
            _unlink_quiet(tmp)
