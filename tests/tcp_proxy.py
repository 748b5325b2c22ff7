"""A TCP proxy for fault injection between a client and PostgreSQL, on loopback, in the test's event loop.

- ``drop_reply_containing(marker)``: the first server-to-client chunk holding ``marker`` is never delivered,
  and that connection is closed: a reply lost after the statement committed.
- ``freeze()``: stop forwarding in both directions without closing anything (no RST, no FIN), as a
  half-open connection or a partition looks to both ends; ``thaw()`` resumes.
- ``drop_nth_reply(n)``: the n-th server-to-client chunk from now on (whatever it answers: a claim, a
  completion, a failure, a heartbeat) is never delivered, and its connection is closed.
- ``freeze_existing()``: the connections open now stop forwarding for good (without closing), while new
  connections work: a NAT or firewall that silently forgot the old ones.

Every dropped reply is logged in ``drops``: when, on which client connection, the request it answered and
the reply itself, so a test can tell which statement lost its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg


@dataclass(frozen=True)
class Drop:
    at: datetime
    client_port: int
    request: bytes  # the last bytes the client sent on that connection before the dropped reply
    reply: bytes

    def describe(self) -> str:
        """The printable words of the request and the reply (SQL text, statement names, row values)."""

        def words(data: bytes) -> str:
            return " ".join(w.decode() for w in re.findall(rb"[\x20-\x7e]{3,}", data))[:300]

        request, reply = words(self.request), words(self.reply)
        return f"{self.at:%H:%M:%S.%f} port {self.client_port}: request [{request}] reply [{reply}]"


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._drop: bytes | None = None
        self._drop_countdown = 0
        self.dropped = 0
        self.drops: list[Drop] = []
        self.frozen = False
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._gates: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def to_database(cls, url: str) -> TcpProxy:
        info = psycopg.conninfo.conninfo_to_dict(url)
        proxy = cls(str(info.get("host", "127.0.0.1")), int(str(info.get("port") or 5432)))
        await proxy.start()
        return proxy

    def url(self, url: str) -> str:
        """``url`` pointed at this proxy."""
        return psycopg.conninfo.make_conninfo(url, host="127.0.0.1", port=self.port, sslmode="disable")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def drop_reply_containing(self, marker: bytes) -> None:
        self._drop = marker

    def drop_nth_reply(self, n: int) -> None:
        self._drop_countdown = n

    def freeze(self) -> None:
        self.frozen = True
        self._thawed.clear()

    def freeze_existing(self) -> None:
        for gate in self._gates:
            gate.clear()
        self._gates = []

    def thaw(self) -> None:
        self.frozen = False
        self._thawed.set()

    def _log_drop(self, last: dict[str, bytes | int], reply: bytes) -> None:
        request, port = last["request"], last["port"]
        assert isinstance(request, bytes) and isinstance(port, int)
        self.drops.append(Drop(datetime.now(UTC), port, request, reply[:2000]))
        self.dropped += 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.frozen:
            self._writers.add(writer)  # accepted, never answered: a connect that hangs
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        gate = asyncio.Event()
        gate.set()
        self._gates.append(gate)
        peer = writer.get_extra_info("peername")
        last: dict[str, bytes | int] = {"request": b"", "port": int(peer[1]) if peer else 0}
        pumps = (
            self._pump(reader, up_writer, gate, upstream=True, last=last),
            self._pump(up_reader, writer, gate, upstream=False, last=last),
        )
        for coro in pumps:
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        *,
        upstream: bool,
        last: dict[str, bytes | int],
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                # Frozen: hold the bytes, so nothing arrives and nothing is refused.
                await self._thawed.wait()
                await gate.wait()
                if upstream:
                    last["request"] = data[-2000:]
                if not upstream and self._drop_countdown > 0:
                    self._drop_countdown -= 1
                    if self._drop_countdown == 0:
                        self._log_drop(last, data)
                        writer.transport.abort()
                        break
                if not upstream and self._drop is not None and self._drop in data:
                    self._drop = None
                    self._log_drop(last, data)
                    writer.transport.abort()
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
