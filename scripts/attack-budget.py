#!/usr/bin/env python3
"""The unfinished-message attack of issue 19, from outside (S19).

Starts the echo example (a release build: `cargo build --release --example
echo`), then N connections (default 100) each stream an unfinished text
message of 48 MiB in 1 MiB fragments, all at once, never the final
fragment. Reports the server's resident memory before and at its peak
(VmRSS from /proc), how many attackers were closed and with which code and
reason, whether a fresh client is still served during the attack, and what
the Python `websockets` client makes of a 1013 close.

usage: scripts/attack-budget.py [--bin target/release/examples/echo]
                                [--connections 100] [--message-mib 48]
"""
import argparse
import asyncio
import base64
import os
import socket
import struct
import subprocess
import sys
import time

import websockets

FRAGMENT = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def frame(opcode, payload, fin):
    """A masked client frame (mask of zeros: the payload goes as is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


async def handshake(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return reader, writer


async def read_close(reader):
    """The code and reason of the server's close frame (skips the greeting)."""
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(n)
        if b0 & 0x0F == 0x8:
            code = struct.unpack(">H", payload[:2])[0] if n >= 2 else 1005
            return code, payload[2:].decode(errors="replace")


async def attacker(port, mib, results, index):
    try:
        reader, writer = await handshake(port)
    except Exception as error:  # refused before the upgrade
        results[index] = ("refused", str(error))
        return
    closing = asyncio.ensure_future(read_close(reader))
    chunk = b"a" * FRAGMENT
    sent = 0
    try:
        for i in range(mib):
            if closing.done():
                break
            writer.write(frame(0x1 if i == 0 else 0x0, chunk, fin=False))
            await asyncio.wait_for(writer.drain(), timeout=30)
            sent += 1
    except Exception:
        pass
    try:
        code, reason = await asyncio.wait_for(asyncio.shield(closing), timeout=5)
        results[index] = ("closed", f"{code} {reason}", sent)
    except Exception:
        results[index] = ("open", f"{sent} MiB sent, held", sent)
    # Keep the connection (and whatever the server holds for it) open
    # until the measurement ends.
    results[index] += (writer,)


async def fresh_client(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        greeting = await asyncio.wait_for(ws.recv(), timeout=10)
        await ws.send("hello")
        echo = await asyncio.wait_for(ws.recv(), timeout=10)
        return greeting, echo


async def websockets_on_1013(port):
    """A `websockets` client that streams its own unfinished message while
    the budget is exhausted: what does it report when the server closes
    with 1013?"""

    async def fragments():
        for _ in range(60):
            yield "b" * FRAGMENT
        await asyncio.sleep(30)  # never finishes the message

    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
            await ws.recv()
            await asyncio.wait_for(ws.send(fragments()), timeout=30)
            return "no close within 30 s"
    except websockets.ConnectionClosed as closed:
        rcvd = closed.rcvd
        return (
            f"{type(closed).__name__}: received close {rcvd.code if rcvd else None} "
            f"{rcvd.reason if rcvd else ''!r}; str: {closed}"
        )
    except Exception as error:
        return f"{type(error).__name__}: {error}"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/examples/echo")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--message-mib", type=int, default=48)
    args = parser.parse_args()
    port = free_port()
    env = dict(os.environ, BIND=f"127.0.0.1:{port}", RUST_LOG="warn")
    server = subprocess.Popen([args.bin], env=env)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        await fresh_client(port)
        before = rss_mib(server.pid)
        results = [None] * args.connections
        peak = before
        started = time.time()
        tasks = [
            asyncio.ensure_future(attacker(port, args.message_mib, results, i))
            for i in range(args.connections)
        ]
        while not all(t.done() for t in tasks):
            peak = max(peak, rss_mib(server.pid))
            await asyncio.sleep(0.2)
        elapsed = time.time() - started
        peak = max(peak, rss_mib(server.pid))
        during = await fresh_client(port)
        on_1013 = await websockets_on_1013(port)
        peak = max(peak, rss_mib(server.pid))
        closed = [r for r in results if r and r[0] == "closed"]
        held = [r for r in results if r and r[0] == "open"]
        refused = [r for r in results if r and r[0] == "refused"]
        reasons = sorted({r[1] for r in closed})
        print(f"attack: {args.connections} connections x {args.message_mib} MiB unfinished, "
              f"1 MiB fragments, {elapsed:.1f} s")
        print(f"server RSS: {before:.0f} MiB before, {peak:.0f} MiB at peak, "
              f"growth {peak - before:.0f} MiB")
        print(f"attackers closed by the server: {len(closed)}, held open: {len(held)} "
              f"(holding {sum(r[2] for r in held)} MiB sent), refused: {len(refused)}")
        for reason in reasons[:5]:
            print(f"  close: {reason}")
        print(f"fresh client during the attack: greeting {during[0]!r}, echo {during[1]!r}")
        print(f"websockets {websockets.__version__} on 1013: {on_1013}")
        for r in results:
            if r and len(r) > 3:
                r[-1].close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
