"""Talking to a real QEMU over QMP, in three layers.

* transport: :class:`QemuProcess` owns one child QEMU and a private socket
  directory; whatever happens, the child is reaped and the directory removed.
* protocol: ``qemu.qmp.QMPClient`` (the QEMU project's own library) speaks
  QMP on that socket.  We listen and QEMU connects to us, so a QEMU that dies
  before its monitor is up is noticed at once instead of after a timeout.
* client: :class:`QemuSession` adds the few typed queries this project asks.

A QEMU is named by a :class:`QemuCommand`: a binary, or a command prefix such
as ``chroot /var/lib/machines-zoo/bullseye qemu-system-x86_64`` (a build of
another Debian suite).  A chroot'd QEMU sees the chroot's files, so every
path handed to it (the monitor socket, a stream file) is made under the
chroot and given as the chroot sees it.

Every failure becomes :class:`machines.errors.EnvironmentUnavailable` with one
line that says what QEMU did; ``qemu.qmp`` is imported only when needed so
that commands which never start QEMU do not pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from attrs import frozen

from machines.errors import EnvironmentUnavailable, UsageError

DEFAULT_TIMEOUT = 20.0

# qemu.qmp logs what goes wrong on its side (a cancelled reader, a peer gone);
# for us every failure is one line from our own code, so its records stay quiet
# instead of reaching Python's last-resort handler as tracebacks on stderr.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False

# Every QemuProcess not yet stopped: if a run is torn down without its cleanup
# (a second Ctrl-C stops the event loop at once), reap_all() still kills their
# process groups and removes their socket directories.
_LIVE: set[QemuProcess] = set()


def checkpoint() -> None:
    """Raise the cancellation (Ctrl-C) a finished ``wait_for`` swallowed.

    On Python 3.11 ``asyncio.wait_for`` returns the result when the awaited
    command completes in the same loop pass as the task's cancellation, and the
    CancelledError is lost: a run of thousands of QMP commands would then
    ignore Ctrl-C.  The task still counts the request; honour it here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def reap_all() -> None:
    """Kill and clean up whatever QEMU children are left, synchronously."""
    for process in list(_LIVE):
        process.kill_now()


class QmpCommandError(EnvironmentUnavailable):
    """QEMU answered a command with an error (the command was understood)."""

    def __init__(self, command: str, desc: str, error_class: str) -> None:
        self.command = command
        self.desc = desc
        self.error_class = error_class
        super().__init__(f"QEMU refused '{command}': {desc}")
BASE_ARGS = ("-nodefaults", "-display", "none")
DEFAULT_BINARY = "qemu-system-x86_64"


@frozen
class QemuCommand:
    """How to start one QEMU build: the argv before QEMU's own arguments.

    ``root`` is the directory that QEMU sees as ``/`` (a chroot's), so that
    files shared with it can be placed where both sides find them.
    """

    argv: tuple[str, ...]
    root: str = "/"

    @classmethod
    def parse(cls, text: str | Sequence[str]) -> QemuCommand:
        """A binary or a command prefix; ``chroot DIR BINARY`` is recognised."""
        try:
            argv = tuple(shlex.split(text) if isinstance(text, str) else text)
        except ValueError as err:
            raise UsageError(f"QEMU command {text!r}: {err}") from None
        if not argv:
            raise UsageError("empty QEMU command")
        if os.path.basename(argv[0]) == "chroot":
            rest = [a for a in argv[1:] if not a.startswith("-")]
            if len(rest) >= 2:
                return cls(argv, os.path.realpath(rest[0]))
            raise UsageError(f"QEMU command {' '.join(argv)!r}: chroot needs a directory "
                             "and the QEMU binary inside it")
        return cls(argv)

    @classmethod
    def chroot(cls, directory: str, binary: str = DEFAULT_BINARY) -> QemuCommand:
        if not os.path.isdir(directory):
            raise UsageError(f"chroot directory '{directory}' does not exist")
        return cls(("chroot", directory, binary), os.path.realpath(directory))

    @classmethod
    def of(cls, qemu: str | QemuCommand) -> QemuCommand:
        return qemu if isinstance(qemu, QemuCommand) else cls.parse(qemu)

    @property
    def name(self) -> str:
        return " ".join(self.argv)

    def guest_path(self, host_path: str) -> str:
        """A path under ``root`` as QEMU sees it."""
        if self.root == "/":
            return host_path
        rel = os.path.relpath(os.path.realpath(host_path), self.root)
        if rel.startswith(".."):
            raise UsageError(f"'{host_path}' is outside {self.root}, which QEMU cannot see")
        return "/" + rel

    def mkdtemp(self, prefix: str) -> str:
        """A private directory QEMU can reach (under the chroot's /tmp)."""
        base = None if self.root == "/" else os.path.join(self.root, "tmp")
        return tempfile.mkdtemp(prefix=prefix, dir=base)

    def resolved(self) -> list[str]:
        """The argv with its program looked up on PATH; an error if it is missing."""
        program = shutil.which(self.argv[0])
        if program is None:
            if os.sep in self.argv[0] and os.path.exists(self.argv[0]):
                raise EnvironmentUnavailable(f"QEMU binary '{self.argv[0]}': Permission denied")
            raise EnvironmentUnavailable(f"QEMU binary '{self.argv[0]}' not found")
        if self.root != "/" and len(self.argv) >= 3:
            inside = self.argv[-1]
            found = any(os.path.exists(os.path.join(self.root, d.lstrip("/"), inside))
                        for d in ("", "/usr/bin", "/usr/local/bin", "/bin"))
            if not found:
                raise EnvironmentUnavailable(f"QEMU binary '{inside}' not found in {self.root}")
        return [program, *self.argv[1:]]


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    # QEMU prefixes its messages with the program name; keep the message.
    line = lines[-1] if lines else ""
    return line.split(": ", 1)[1] if line.startswith("qemu-system") and ": " in line else line


class QemuProcess:
    """One QEMU child with a QMP monitor; an async context manager."""

    def __init__(self, binary: str | QemuCommand, args: Sequence[str],
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = QemuCommand.of(binary)
        self.binary = self.command.name
        self.args = tuple(args)
        self.timeout = timeout
        self.tmpdir: str | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.client: Any = None

    async def __aenter__(self) -> QemuProcess:
        _LIVE.add(self)
        try:
            await self._start()
        except BaseException:
            await self._stop_fully()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop_fully()

    async def _stop_fully(self) -> None:
        """_stop() to its end even when the run is cancelled (Ctrl-C) meanwhile."""
        stop = asyncio.ensure_future(self._stop())
        try:
            await asyncio.shield(stop)
        except asyncio.CancelledError:
            while not stop.done():  # finish the cleanup (bounded by its timeouts) first
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(stop)
            raise
        finally:
            if not stop.done():  # the loop is going away under us
                self.kill_now()

    def kill_now(self) -> None:
        """Synchronous last resort: SIGKILL the process group, remove the directory."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        _LIVE.discard(self)

    async def _start(self) -> None:
        from qemu.qmp import QMPClient

        argv = self.command.resolved()
        self.tmpdir = self.command.mkdtemp("machines-qmp-")
        sock = os.path.join(self.tmpdir, "qmp.sock")
        stderr_path = os.path.join(self.tmpdir, "stderr")
        self.client = QMPClient("machines")
        await self.client.start_server(sock)
        with open(stderr_path, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, *self.args,
                "-chardev", f"socket,id=machines-qmp,path={self.command.guest_path(sock)}",
                "-mon", "chardev=machines-qmp,mode=control",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )
        accept = asyncio.ensure_future(self.client.accept())
        exited = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait({accept, exited}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (Ctrl-C): wind the handshake down before _stop
            for task in (accept, exited):
                task.cancel()
            await asyncio.wait({accept, exited})
            if not accept.cancelled():
                accept.exception()  # retrieved: qemu.qmp's own failure is not news
            raise
        if accept in done and accept.exception() is None:
            exited.cancel()
            return
        accept.cancel()
        await asyncio.wait({accept})  # let it finish; our own cancellation still propagates
        if self.proc.returncode is None and done:
            # The handshake broke: usually QEMU is on its way out with a message.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), 2.0)
        exited.cancel()
        if self.proc.returncode is not None:
            why = _last_line(stderr_path) or "no message"
            raise EnvironmentUnavailable(
                f"QEMU '{self.binary}' exited at once (status {self.proc.returncode}): {why}")
        if not done:
            raise EnvironmentUnavailable(
                f"QEMU '{self.binary}' did not open its monitor within {self.timeout:g} s")
        raise EnvironmentUnavailable(
            f"QEMU '{self.binary}' monitor handshake failed: {accept.exception()}")

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one QMP command; errors and garbage become one clear line."""
        from qemu.qmp import ExecuteError, QMPError

        try:
            reply = await asyncio.wait_for(self.client.execute(command, arguments), self.timeout)
            checkpoint()
            return reply
        except ExecuteError as err:
            raise QmpCommandError(command, str(err), err.error_class) from None
        except TimeoutError:
            raise EnvironmentUnavailable(
                f"QEMU did not answer '{command}' within {self.timeout:g} s") from None
        except (QMPError, EOFError, OSError) as err:
            detail = str(err) or type(err).__name__
            raise EnvironmentUnavailable(f"QEMU broke off '{command}': {detail}") from None

    async def _stop(self) -> None:
        if self.client is not None:
            from qemu.qmp import Runstate

            if self.client.runstate == Runstate.RUNNING:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.client.execute("quit"), 2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.disconnect(), 2.0)
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        _LIVE.discard(self)


class QemuSession:
    """Typed queries over a running :class:`QemuProcess`."""

    def __init__(self, process: QemuProcess) -> None:
        self.process = process

    async def version(self) -> tuple[str, str]:
        reply = _expect(await self.process.execute("query-version"), dict, "query-version")
        numbers = _expect(reply.get("qemu"), dict, "query-version")
        parts = [numbers.get(k) for k in ("major", "minor", "micro")]
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 16
                   for n in parts):
            raise EnvironmentUnavailable("QEMU sent an unexpected reply to 'query-version'")
        return ".".join(map(str, parts)), str(reply.get("package", "")).strip()

    async def machines(self) -> list[dict[str, Any]]:
        try:
            reply = await self.process.execute("query-machines", {"compat-props": True})
        except QmpCommandError as err:
            if "compat-props" not in err.desc:
                raise
            # QEMU before 9.1 has no such argument (nor the field in the reply).
            reply = await self.process.execute("query-machines")
        found = _records(reply, "query-machines", {"name": str, "alias": str,
                                                    "default-cpu-type": str})
        for machine in found:
            props = machine.get("compat-props")
            if props is not None:
                _records(props, "query-machines", {"qom-type": str, "property": str,
                                                   "value": str}, required=3)
        return found

    async def types(self) -> list[dict[str, Any]]:
        reply = await self.process.execute("qom-list-types", {"abstract": True})
        return _records(reply, "qom-list-types", {"name": str, "parent": str, "abstract": bool})

    async def device_properties(self, typename: str) -> list[dict[str, Any]]:
        reply = await self.process.execute("device-list-properties", {"typename": typename})
        return _records(reply, "device-list-properties", _PROPERTY_FIELDS)

    async def object_properties(self, typename: str) -> list[dict[str, Any]]:
        reply = await self.process.execute("qom-list-properties", {"typename": typename})
        return _records(reply, "qom-list-properties", _PROPERTY_FIELDS)

    async def qom_get(self, path: str, prop: str) -> Any:
        return await self.process.execute("qom-get", {"path": path, "property": prop})

    async def qom_list(self, path: str) -> list[dict[str, Any]]:
        reply = await self.process.execute("qom-list", {"path": path})
        return _records(reply, "qom-list", {"name": str, "type": str}, required=2)


_PROPERTY_FIELDS: Mapping[str, type] = {"name": str, "type": str, "description": str}


def _records(reply: Any, what: str, fields: Mapping[str, type], required: int = 1
             ) -> list[dict[str, Any]]:
    """A QMP reply that must be a list of objects.

    The first ``required`` of ``fields`` must be present; any of them present
    must have its type.  QEMU sends exactly this; anything else means the
    peer is not the QEMU we think it is, and gets one line, not a traceback.
    """
    records: list[dict[str, Any]] = _expect(reply, list, what)
    names = list(fields)
    for i, record in enumerate(records):
        _expect(record, dict, what)
        for name in names[:required]:
            if name not in record:
                raise EnvironmentUnavailable(
                    f"QEMU sent an unexpected reply to '{what}': item {i} has no '{name}'")
        for name, kind in fields.items():
            value = record.get(name)
            if value is not None and not isinstance(value, kind):
                raise EnvironmentUnavailable(
                    f"QEMU sent an unexpected reply to '{what}': item {i} field '{name}' "
                    f"is not {'a string' if kind is str else 'a boolean'}")
    return records


def _expect(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise EnvironmentUnavailable(f"QEMU sent an unexpected reply to '{what}'")
    return value
