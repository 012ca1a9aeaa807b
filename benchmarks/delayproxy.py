"""A TCP proxy on 127.0.0.1 that makes a loopback server look distant.

Every chunk is held for half the round trip in each direction (in order, without holding up
the chunks behind it), and each new connection waits one round trip first, as a TCP
handshake does.  Protocol-blind, so git's smart HTTP (POST bodies) goes through it as well
as lazygit's range reads.  The benchmark measures clones through it, where the number of
round trips in a row shows, as it does on a real link.

    python benchmarks/delayproxy.py UPSTREAM_PORT RTT_MS   # prints the port it listens on
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(1 << 20)
            queue.put_nowait((time.monotonic() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(read(), write(), return_exceptions=True)


async def _serve(upstream: int, rtt: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(rtt)  # the handshake
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            _pump(client_r, server_w, rtt / 2),
            _pump(server_r, client_w, rtt / 2),
            return_exceptions=True,
        )
        client_w.close()
        server_w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    upstream, rtt_ms = int(sys.argv[1]), float(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(upstream, rtt_ms / 1000))


if __name__ == "__main__":
    main()
