#!/usr/bin/env python3
"""The rate and per-address checks of issue 19, from outside (S19).

Starts the echo example with MAX_MESSAGES_PER_SECOND=200 and
MAX_CONNECTIONS_PER_IP=20, floods 600 messages on one connection (all must
come back, in order, no sooner than the rate allows, the connection open),
then opens 30 connections (20 upgraded, 10 refused with 429 and
Retry-After) and checks that a place frees when one closes.

usage: scripts/guard-check.py target/release/examples/echo
"""
import asyncio, os, socket, subprocess, sys, time, websockets
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
async def main(binary):
    port=free_port()
    env=dict(os.environ,BIND=f"127.0.0.1:{port}",RUST_LOG="warn",MAX_MESSAGES_PER_SECOND="200",MAX_CONNECTIONS_PER_IP="20")
    srv=subprocess.Popen([binary],env=env)
    try:
        for _ in range(200):
            try: socket.create_connection(("127.0.0.1",port),timeout=0.1).close(); break
            except OSError: time.sleep(0.05)
        url=f"ws://127.0.0.1:{port}/ws"
        async with websockets.connect(url) as ws:
            await ws.recv()
            t0=time.monotonic()
            for i in range(600): await ws.send(str(i))
            got=[await ws.recv() for _ in range(600)]
            dt=time.monotonic()-t0
            print(f"rate: 600 sent, {len(got)} echoed, in order: {got==[str(i) for i in range(600)]}, {dt:.2f} s (>= {(600-20)/200:.2f} s allowed), open: {ws.state.name}")
        conns=[];statuses=[]
        for i in range(30):
            try:
                ws=await websockets.connect(url); await ws.recv(); conns.append(ws)
            except websockets.InvalidStatus as e:
                statuses.append((e.response.status_code, e.response.headers.get("Retry-After")))
        print(f"caps: {len(conns)} upgraded, {len(statuses)} refused {sorted(set(statuses))}")
        await conns[0].close()
        # The place frees when the server has run on_close: retry until then.
        for attempt in range(100):
            try:
                ws=await websockets.connect(url); await ws.recv(); break
            except websockets.InvalidStatus:
                await asyncio.sleep(0.01)
        print("caps: after one close, a new connection is upgraded")
        await ws.close()
        for c in conns[1:]: await c.close()
    finally:
        srv.terminate(); srv.wait()
asyncio.run(main(sys.argv[1]))
