"""The host object store: large task outputs as files every dagrt process on a host maps.

A worker writes an output of at least ``min_bytes`` once, as the frame
:func:`dagrt.serialize.dumps_frame` makes (pickle, then each out-of-band buffer
64-byte aligned), into ``<root>/<run id>/<task>``: on a ``tmpfs`` such as
``/dev/shm`` that is shared memory. A consumer on the same host maps the file
copy-on-write (``MAP_PRIVATE``): no socket, no copy, no second pickle of the
buffers; numpy arrays come back writable, and a task that writes into its
input changes only its own pages.

* **Bounded**: the bytes of every object of the host are counted in
  ``<root>/.usage`` (an 8-byte counter, changed under ``lockf``); a put that
  would pass ``max_bytes`` is refused (the caller stores the value in Redis
  instead: never a failed run).
* **Survives its writer**: files stay when the worker that wrote them dies; a
  file removed while mapped stays readable by whoever mapped it.
* **Emptied**: a run's directory when the run ends (:meth:`HostStore.drop_run`,
  any worker of the host, once: the directory is first renamed away);
  directories of runs whose keys are gone (:meth:`HostStore.sweep`, after a
  crash); the whole store when the host's last dagrt process leaves, or when
  the first one arrives and finds files that nobody holds (every process that
  uses the store holds a shared ``flock`` on ``<root>/.lock``; the kernel drops
  it when the process dies, SIGKILL included).

* **Warm pages**: the files of a run that ended are kept as spares
  (``<root>/.spare``, counted in the budget, at most :data:`SPARE_SHARE` of it,
  released after a minute unused) and the next object of a similar size is
  written into one: its pages are already there, so writing it is a copy, not a
  copy plus allocating and zeroing every page (on this project's VM, fresh pages
  cost as much again as the copy, and far more when the hypervisor has taken them
  back). A spare is only written when nobody has it open or mapped any more: a
  write lease (``F_SETLEASE``), which the kernel refuses while any other file
  description of it exists, mappings included; a spare that is refused is
  removed instead (whoever maps it keeps its pages).

Writes are atomic (a temporary name, then a rename), so a reader sees a whole
object or none. Each object's size is recorded with its location (Redis), and a
file whose size differs is reported as corrupt (:class:`ObjectCorrupt`).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import shutil
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import keys as K
from ..exceptions import DagrtError
from ..serialize import Frame

__all__ = [
    "HostStore",
    "ObjectCorrupt",
    "ObjectMissing",
    "StoreError",
    "default_root",
    "namespace_of",
]

_USAGE = struct.Struct("<q")
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", None)  # Linux
SPARE = ".spare"
#: the share of the byte budget that spare files may hold
SPARE_SHARE = 0.25
SPARE_MIN_BYTES = 1 << 17  # smaller files are not worth keeping
SPARE_MAX_FILES = 4096
SPARE_IDLE_SECONDS = 60.0
_IOV_MAX = 512  # pieces per writev (the kernel's limit is 1024)


class StoreError(DagrtError):
    """An object of the host store cannot be read."""


class ObjectMissing(StoreError):
    """The object is not in this host's store."""


class ObjectCorrupt(StoreError):
    """The object's file does not have the size its location records."""


def default_root(namespace: str = "") -> Path:
    """Where a store lives by default: ``/dev/shm/dagrt-<uid>/<namespace>`` (shared
    memory) if ``/dev/shm`` exists, else under the temporary directory. Pools of
    different servers on one host get different namespaces (a store is swept of
    runs its server does not know)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(_tmpdir())
    root = base / f"dagrt-{os.getuid()}"
    return root / namespace if namespace else root


def namespace_of(url: str) -> str:
    """A store namespace for the pool of the server at ``url`` (its password left out)."""
    import hashlib
    import re

    plain = re.sub(r"//[^@/]*@", "//", url)
    return hashlib.sha256(plain.encode()).hexdigest()[:12]


def _tmpdir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _check_run(run_id: str) -> str:
    """A run id, checked (it names a folder of the store: :func:`dagrt.keys.check_run_id`)."""
    return K.check_run_id(run_id)


class HostStore:
    """One host's object store under ``root`` (see the module's text)."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes if max_bytes is not None else -1  # -1: set by open()
        self._lock_fd: int | None = None
        self._usage_fd: int | None = None

    def __repr__(self) -> str:
        return f"<dagrt.HostStore {self.root} {self.max_bytes:,} bytes>"

    # -- joining and leaving the host ---------------------------------------------------

    def open(self) -> HostStore:
        """Join the host's store: create it, empty it if no other process holds it
        (what a crashed cluster left), and hold it (a shared lock) until :meth:`close`."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.max_bytes < 0:  # half of the filesystem it is on
            fs = os.statvfs(self.root)
            self.max_bytes = fs.f_blocks * fs.f_frsize // 2
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # others use it: join them
            else:
                self._empty()  # nobody holds it: whatever is here is left over
            fcntl.flock(fd, fcntl.LOCK_SH)  # (an exclusive lock becomes shared)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._usage_fd = os.open(self.root / ".usage", os.O_RDWR | os.O_CREAT, 0o600)
        return self

    def close(self) -> None:
        """Leave the host's store; the last process to leave empties it."""
        fd, self._lock_fd = self._lock_fd, None
        if self._usage_fd is not None:
            os.close(self._usage_fd)
            self._usage_fd = None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # others still use it
            self._empty()
        finally:
            os.close(fd)

    def __enter__(self) -> HostStore:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _empty(self) -> None:
        for entry in os.scandir(self.root):
            if entry.name in (".lock",):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    # -- objects ------------------------------------------------------------------------

    def path(self, run_id: str, index: int) -> Path:
        return self.root / _check_run(run_id) / str(int(index))

    def put(self, run_id: str, index: int, frame: bytes | Frame) -> bool:
        """Write one object (blocking: call it from a thread for large ones); False
        if the store has no room for it (nothing written)."""
        incoming = self.receive(run_id, index, len(frame))
        if incoming is None:
            return False
        try:
            incoming.write_parts(frame.parts if isinstance(frame, Frame) else [frame])
        except BaseException:
            incoming.abort()
            raise
        incoming.commit()
        return True

    def receive(self, run_id: str, index: int, size: int) -> _Incoming | None:
        """A file of ``size`` bytes to fill in order (a transfer from another host);
        None if the store has no room. :meth:`_Incoming.commit` publishes it."""
        final = self.path(run_id, index)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = final.parent / f".{index}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = self._reuse_spare(tmp, size) if size >= SPARE_MIN_BYTES else None
        if fd is None:
            if not self._reserve(size):
                return None
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except BaseException:
                self._release(size)
                raise
        return _Incoming(self, fd, tmp, final, size)

    def map(self, run_id: str, index: int, size: int) -> memoryview:
        """Map one object copy-on-write: a writable view of ``size`` bytes that copies
        nothing until written. :class:`ObjectMissing` if it is not here,
        :class:`ObjectCorrupt` if its size is not ``size``."""
        path = self.path(run_id, index)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectMissing(
                f"object {run_id}/{index} is not in the store {self.root}"
            ) from None
        try:
            actual = os.fstat(fd).st_size
            if actual != size:
                raise ObjectCorrupt(
                    f"object {run_id}/{index} in {self.root} has {actual:,} bytes,"
                    f" its location records {size:,}"
                )
            if size == 0:
                return memoryview(bytearray())
            return memoryview(mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE))
        finally:
            os.close(fd)

    def exists(self, run_id: str, index: int) -> bool:
        return self.path(run_id, index).exists()

    # -- emptying -----------------------------------------------------------------------

    def drop_run(self, run_id: str) -> int:
        """Remove a run's objects (its run ended); bytes freed. Safe to call from every
        worker of the host at once: one of them removes them."""
        try:
            src = self.path(run_id, 0).parent
        except ValueError:
            return 0
        trash = self.root / f".trash-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.rename(src, trash)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        freed = 0
        spares = self._spares()
        room = int(self.max_bytes * SPARE_SHARE) - sum(size for _, size in spares)
        count = len(spares)
        if _F_SETLEASE is not None:
            (self.root / SPARE).mkdir(exist_ok=True, mode=0o700)
        for entry in os.scandir(trash):
            try:
                size = entry.stat(follow_symlinks=False).st_size
                if (
                    _F_SETLEASE is not None
                    and not entry.name.startswith(".")
                    and SPARE_MIN_BYTES <= size <= room
                    and count < SPARE_MAX_FILES
                ):
                    spare = self.root / SPARE / f"{size}.{os.urandom(6).hex()}"
                    os.utime(entry.path)  # (its idle time starts now)
                    os.rename(entry.path, spare)  # its pages stay: still counted
                    room -= size
                    count += 1
                else:
                    freed += size
            except FileNotFoundError:
                pass
        shutil.rmtree(trash, ignore_errors=True)
        self._release(freed)
        return freed

    # -- spares: files kept for their pages -------------------------------------------

    def _spares(self) -> list[tuple[str, int]]:
        """(path, size) of each spare file: its size is in its name (no stat)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / SPARE):
                size, dot, _ = entry.name.partition(".")
                if dot and size.isdigit():
                    out.append((entry.path, int(size)))
        return out

    def _reuse_spare(self, tmp: Path, size: int) -> int | None:
        """Take the spare closest in size to ``size`` as ``tmp`` and make it ``size``
        bytes: an open descriptor to write it through, or None (no spare that
        nobody holds; no room for what it must grow by)."""
        spares = sorted(self._spares(), key=lambda s: (s[1] < size, abs(s[1] - size)))
        for path, old in spares[:3]:  # (``old``: the bytes the budget counts for it)
            try:
                os.rename(path, tmp)  # ours now (another process may have been faster)
            except FileNotFoundError:
                continue
            fd = os.open(tmp, os.O_RDWR)
            try:
                if _nobody_else_holds(fd) and (size <= old or self._reserve(size - old)):
                    os.utime(fd)  # (a write in progress, not a leftover for sweep())
                    if size != old:
                        os.ftruncate(fd, size)
                        self._release(old - size)  # (a file that grew: reserved above)
                    return fd
            except BaseException:
                _discard(fd, tmp)
                self._release(old)
                raise
            _discard(fd, tmp)  # held by someone, or no room to grow: let it go
            self._release(old)
        return None

    def _drop_spares(self, need: int = 0, *, idle: float | None = None) -> int:
        """Remove spares: enough to free ``need`` bytes, or those unused for ``idle``
        seconds. Bytes freed."""
        freed = 0
        cutoff = time.time() - idle if idle is not None else None
        for path, size in self._spares():
            if cutoff is None and freed >= need:
                break
            try:
                if cutoff is not None and os.stat(path).st_mtime >= cutoff:
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            freed += size
        self._release(freed)
        return freed

    def runs(self) -> list[str]:
        """The runs that have objects here."""
        return [
            e.name
            for e in os.scandir(self.root)
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        ]

    def sweep(self, ended: Iterable[str], *, older_than: float = 60.0) -> int:
        """Remove the objects of runs in ``ended`` (their keys are gone: the run ended
        while no worker of this host listened), and leftovers of interrupted writes
        older than ``older_than`` seconds; then count the bytes held again (a process
        that died between counting and writing leaves the counter off). Bytes freed."""
        freed = sum(self.drop_run(run_id) for run_id in ended)
        freed += self._drop_spares(idle=SPARE_IDLE_SECONDS)
        cutoff = time.time() - older_than
        for entry in os.scandir(self.root):
            if entry.name.startswith(".trash-") and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry.path, ignore_errors=True)
        for run_id in self.runs():
            for entry in os.scandir(self.root / run_id):
                if entry.name.startswith(".") and entry.stat().st_mtime < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        self._recount()
        return freed

    # -- the byte budget ----------------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes the host's objects hold (by the shared counter)."""
        fd = self._fd()
        fcntl.lockf(fd, fcntl.LOCK_SH)
        try:
            return _read_usage(fd)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _fd(self) -> int:
        if self._usage_fd is None:
            raise RuntimeError("the host store is not open")
        return self._usage_fd

    def _reserve(self, size: int) -> bool:
        """Count ``size`` more bytes if the budget allows, removing spares for room."""
        if self._reserve_once(size):
            return True
        return self._drop_spares(size) > 0 and self._reserve_once(size)

    def _reserve_once(self, size: int) -> bool:
        fd = self._fd()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            used = _read_usage(fd)
            if used + size > self.max_bytes:
                return False
            os.pwrite(fd, _USAGE.pack(used + size), 0)
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _release(self, size: int) -> None:
        if size <= 0 or self._usage_fd is None:
            return
        fd = self._usage_fd
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            os.pwrite(fd, _USAGE.pack(max(0, _read_usage(fd) - size)), 0)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _recount(self) -> None:
        fd = self._fd()
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            total = sum(size for _, size in self._spares())
            for run_id in self.runs():
                for entry in os.scandir(self.root / run_id):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat(follow_symlinks=False).st_size
            os.pwrite(fd, _USAGE.pack(total), 0)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)


class _Incoming:
    """A store file being filled in order (:meth:`write`), then :meth:`commit`
    (published under its name) or :meth:`abort` (removed, its bytes given back).

    Written, not mapped: filling a fresh mapping faults its pages in one by one
    (measured: 45-66 ms for 64 MiB from a socket, against 33 ms through ``write``)."""

    def __init__(self, store: HostStore, fd: int, tmp: Path, final: Path, size: int) -> None:
        self.store, self.tmp, self.final, self.size = store, tmp, final, size
        self.fd: int | None = fd
        self.written = 0

    def write(self, data: memoryview) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        assert self.fd is not None
        self.written += _write_all(self.fd, parts)

    def splice_from(self, pipe: int, n: int) -> None:
        """Move ``n`` bytes waiting in ``pipe`` into the file (``os.splice``: no copy
        through this process)."""
        assert self.fd is not None
        moved = 0
        while moved < n:
            moved += os.splice(pipe, self.fd, n - moved)
        self.written += n

    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview]:
        """What was written so far, mapped read-only (to check it before :meth:`commit`)."""
        fd = os.open(self.tmp, os.O_RDONLY)  # (the file is open for writing only)
        try:
            with mapped(fd, self.written) as view:
                yield view
        finally:
            os.close(fd)

    def commit(self) -> None:
        if self.written != self.size:
            self.abort()
            raise ObjectCorrupt(f"{self.final}: {self.written:,} of {self.size:,} bytes written")
        self._close()
        os.rename(self.tmp, self.final)

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        self.store._release(self.size)

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def mapped(fd: int, size: int) -> Iterator[memoryview]:
    """The first ``size`` bytes of file ``fd``, mapped read-only while in the block."""
    if size == 0:
        yield memoryview(b"")
        return
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapping, memoryview(mapping) as view:
        yield view


def _nobody_else_holds(fd: int) -> bool:
    """Does no other file description of ``fd``'s file exist (no other process, nor
    this one, has it open or mapped)? A write lease is granted only then."""
    if _F_SETLEASE is None:
        return False
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_WRLCK)
    except OSError:  # EAGAIN: held; EACCES/EINVAL: leases not allowed here
        return False
    fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    return True


def _discard(fd: int, tmp: Path) -> None:
    """Close and remove a file this process took (whoever maps it keeps its pages)."""
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _read_usage(fd: int) -> int:
    raw = os.pread(fd, _USAGE.size, 0)
    return _USAGE.unpack(raw)[0] if len(raw) == _USAGE.size else 0


def _write_all(fd: int, parts: list[bytes | memoryview]) -> int:
    """Write every piece, in order (``writev`` may write fewer bytes than asked);
    bytes written."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    total = sum(len(v) for v in views)
    while views:
        batch = views[:_IOV_MAX]
        written = os.writev(fd, batch)
        while written:
            head = views[0]
            if written >= len(head):
                written -= len(head)
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0
    return total
