"""A TCP fault proxy between a client and its broker, steered from code (an uplink we control).

Modes, switchable at any moment:
- `pass`: bytes flow both ways;
- `blackhole`: connections stay open but every byte is discarded, as on a link that silently
  died (the client notices only by its keepalive);
- `drop`: every connection is cut at once and new ones are closed on arrival (connection refused).

It runs its own asyncio loop in a thread, so it serves in-process clients and client processes
alike, and `set_mode` is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

Mode = Literal["pass", "blackhole", "drop"]
CHUNK = 65536


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.mode: Mode = "pass"
        self.connections = 0  # accepted so far (a reconnecting client shows up here)
        self.bytes_forwarded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.listen_host, 0), self._loop).result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def set_mode(self, mode: Mode) -> None:
        if mode not in ("pass", "blackhole", "drop"):
            raise ValueError(f"unknown fault proxy mode {mode!r}")
        asyncio.run_coroutine_threadsafe(self._set_mode(mode), self._loop).result(timeout=5)

    async def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "drop":
            for writer in list(self._writers):
                writer.transport.abort()  # RST: the client sees the connection die at once
            self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.mode == "drop":
            client_writer.transport.abort()
            return
        self.connections += 1
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, broker_writer}
        await asyncio.gather(self._pipe(client_reader, broker_writer), self._pipe(broker_reader, client_writer))
        for writer in (client_writer, broker_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self.mode == "pass":
                    writer.write(data)
                    self.bytes_forwarded += len(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # one side gone: so is the other, as through a real middlebox

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            await self._set_mode("drop")

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
