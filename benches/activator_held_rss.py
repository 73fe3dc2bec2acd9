#!/usr/bin/env python3
"""What a held request costs the activator in resident memory (issue 5's
"RSS with 10,000 held requests", knative#13583).

Starts the release activator on a static source with one revision that has no
pods, opens N connections that each send one request for it, and reads the
process's VmRSS before and after. Two ways in, measured in the same run:

- fresh: the request is the connection's first, so the early hold keeps it
  before hyper takes the connection (activator/src/early_hold.rs);
- kept-alive, held: each connection first gets an activator probe answered, then
  sends the held request, which hyper's connection and the handler hold;
- h2c: N streams over N/250 HTTP/2 connections (h2load, from Debian's
  nghttp2-client; skipped without it), held by the handler.

For reference, "kept-alive, idle" is the same connections with no request
held: what hyper keeps for an idle kept-alive connection anyway.

    cargo build --release -p activator
    python3 benches/activator_held_rss.py [N]      # N defaults to 10000

Needs `ulimit -n` above N + 100.
"""

import asyncio
import json
import shutil
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTIVATOR = os.path.join(ROOT, "target", "release", "activator")
HELD = (
    b"GET / HTTP/1.1\r\nHost: cold.default.svc.cluster.local\r\n"
    b"User-Agent: held-rss\r\nAccept: */*\r\n\r\n"
)
PROBE = b"GET / HTTP/1.1\r\nHost: activator\r\nK-Network-Probe: activator\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_activator(workdir: str):
    source = os.path.join(workdir, "revisions.json")
    with open(source, "w") as f:
        json.dump(
            {
                "revisions": [
                    {
                        "namespace": "default",
                        "name": "cold",
                        "containerConcurrency": 10,
                        "timeoutSeconds": 600,
                    }
                ]
            },
            f,
        )
    port = free_port()
    env = dict(
        os.environ,
        POD_NAME="activator-rss",
        POD_IP="127.0.0.1",
        SYSTEM_NAMESPACE="knative-serving",
        ACTIVATOR_HTTP_PORT=str(port),
        ACTIVATOR_H2C_PORT=str(free_port()),
        ACTIVATOR_STATIC_SOURCE=source,
        ACTIVATOR_DRAIN_TIMEOUT_MS="0",
        # Nobody listens: stats are dropped, traffic is still served.
        ACTIVATOR_AUTOSCALER_URL=f"ws://127.0.0.1:{free_port()}",
    )
    log = open(os.path.join(workdir, "activator.log"), "w")
    proc = subprocess.Popen([ACTIVATOR], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the activator did not start")


async def hold(port: int, n: int, probe_first: bool, send_held: bool = True):
    writers = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if probe_first:
            writer.write(PROBE)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        if send_held:
            writer.write(HELD)
        writers.append((reader, writer))
        if i % 500 == 499:
            await asyncio.sleep(0)
    for _, writer in writers:
        await writer.drain()
    return writers


def hold_h2(port: int, n: int):
    """h2load holding n streams, 250 per connection (the server's limit)."""
    connections = max(1, n // 250)
    return subprocess.Popen(
        ["h2load", "-n", str(n), "-c", str(connections), "-m", "250",
         "-H", "host: cold.default.svc.cluster.local", f"http://127.0.0.1:{port}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def measure(n: int, mode: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_activator(workdir)
        try:
            time.sleep(1)
            idle = rss_kib(proc.pid)
            loop = asyncio.new_event_loop()
            if mode == "h2c":
                client = hold_h2(port, n)
                time.sleep(5)
            else:
                probe_first = mode.startswith("kept-alive")
                send_held = mode != "kept-alive, idle"
                writers = loop.run_until_complete(hold(port, n, probe_first, send_held))
                time.sleep(3)
            assert proc.poll() is None, "the activator exited"
            held = rss_kib(proc.pid)
            if mode == "h2c":
                client.kill()
                client.wait()
            else:
                for _, writer in writers:
                    writer.close()
            loop.close()
            return idle / 1024, held / 1024
        finally:
            # Requests still held keep a graceful drain waiting: the second
            # signal ends the process.
            proc.terminate()
            time.sleep(0.2)
            proc.terminate()
            proc.wait(timeout=60)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    print(f"{n} held requests, activator {ACTIVATOR}")
    modes = ["fresh connections", "kept-alive, held", "kept-alive, idle"]
    if shutil.which("h2load"):
        modes.append("h2c")
    for name in modes:
        idle, held = measure(n, name)
        per = (held - idle) * 1024 * 1024 / n
        print(
            f"{name:>17}: idle {idle:6.1f} MiB, held {held:6.1f} MiB, "
            f"{per / 1024:5.1f} KiB per held request"
        )


if __name__ == "__main__":
    main()
