#!/usr/bin/env python3
"""Outside check of S15/S16 against the examples, with a real client.

1. Slow reader: send COUNT numbered 64 KiB binary messages without reading,
   wait PAUSE seconds, then read: every echo must come back, in order; the
   server's resident memory growth is reported (and must stay under 96 MiB).
2. Async order: 20 text messages back to back to async_echo come back in
   order, no sooner than 20 x DELAY_MS.

Usage: flow_check.py slow   ws://127.0.0.1:8080/ws PID [--skip-greeting]
       flow_check.py order  ws://127.0.0.1:8080/ws DELAY_MS
Needs the `websockets` and `psutil` packages.
"""
import asyncio
import struct
import sys
import time

import psutil
import websockets

COUNT = 1024
SIZE = 64 * 1024
PAUSE = 5.0
RSS_LIMIT = 96 << 20


def numbered(i: int) -> bytes:
    return struct.pack(">I", i) + bytes([i % 251]) * (SIZE - 4)


async def slow(url: str, pid: int, skip_greeting: bool) -> None:
    server = psutil.Process(pid)
    rss_before = server.memory_info().rss
    peak = rss_before
    # No client keepalive: a ping queued behind a thousand messages that the
    # server reads one handler at a time cannot be answered within
    # websockets' 20 s ping timeout, by design (S15, S16).
    async with websockets.connect(url, max_size=None, compression=None,
                                  write_limit=2 ** 30, ping_interval=None) as ws:
        if skip_greeting:
            await ws.recv()

        async def writer():
            for i in range(COUNT):
                await ws.send(numbered(i))

        sending = asyncio.create_task(writer())
        # Read nothing for PAUSE seconds, watching the server's memory.
        deadline = time.monotonic() + PAUSE
        while time.monotonic() < deadline:
            peak = max(peak, server.memory_info().rss)
            await asyncio.sleep(0.05)
        for i in range(COUNT):
            echo = await asyncio.wait_for(ws.recv(), 30)
            if echo != numbered(i):
                got = struct.unpack(">I", echo[:4])[0] if len(echo) >= 4 else None
                raise SystemExit(f"echo {i}: got message {got} ({len(echo)} bytes)")
            if i % 64 == 0:
                peak = max(peak, server.memory_info().rss)
        await sending
    growth = peak - rss_before
    print(f"slow reader: {COUNT}/{COUNT} echoes in order; server RSS growth "
          f"{growth / (1 << 20):.1f} MiB (before {rss_before / (1 << 20):.1f} MiB)")
    if growth > RSS_LIMIT:
        raise SystemExit(f"server RSS grew by {growth >> 20} MiB (limit 96)")


async def order(url: str, delay_ms: int) -> None:
    async with websockets.connect(url) as ws:
        start = time.monotonic()
        for i in range(20):
            await ws.send(f"message {i}")
        for i in range(20):
            echo = await asyncio.wait_for(ws.recv(), 30)
            if echo != f"message {i}":
                raise SystemExit(f"echo {i}: got {echo!r}")
        elapsed = time.monotonic() - start
    print(f"async order: 20/20 in order in {elapsed * 1000:.0f} ms "
          f"(at least {20 * delay_ms} ms expected)")
    if elapsed * 1000 < 20 * delay_ms:
        raise SystemExit("echoes came back sooner than one delay each: handlers overlapped")


def main() -> None:
    kind, url = sys.argv[1], sys.argv[2]
    if kind == "slow":
        asyncio.run(slow(url, int(sys.argv[3]), "--skip-greeting" in sys.argv))
    elif kind == "order":
        asyncio.run(order(url, int(sys.argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
