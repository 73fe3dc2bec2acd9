#!/usr/bin/env python3
"""Instructions per request of the queue-proxy under callgrind, per observability setting.

Deterministic where wall-clock runs on a shared machine are not: each variant's
queue-proxy runs under `valgrind --tool=callgrind` in front of an nginx backend, serves a
warm-up and then `hey -n N -c C` requests, and is stopped; the same variant is also run
with no load, and instructions per request = (Ir with load - Ir without) / N.

Needs valgrind, hey and nginx (Debian: `apt-get install -y valgrind hey nginx-light`) and a
built binary (default: target/dist/queue-proxy, `cargo build --profile dist -p queue-proxy`).
Reuses the process helpers of proxy_overhead.py. Results: benches/results/telemetry_instructions.json
(git-ignored unless copied); the summary is written by hand in benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import proxy_overhead as po  # noqa: E402

DEFAULT_BIN = os.path.join(po.REPO, "target", "dist", "queue-proxy")


def variants(closed_port: int) -> dict[str, str]:
    otlp = f"http://127.0.0.1:{closed_port}"
    return {
        "plain": "",
        "tracing-none": json.dumps({"tracing": {"protocol": "none"}}),
        "trace-sampled-out": json.dumps(
            {"tracing": {"protocol": "http/protobuf", "endpoint": otlp, "samplingRate": 0}}),
        "trace-sampled": json.dumps(
            {"tracing": {"protocol": "http/protobuf", "endpoint": otlp, "samplingRate": 1}}),
        "metrics-prometheus": json.dumps(
            {"requestMetrics": {"protocol": "prometheus", "endpoint": f":{po.free_port()}"}}),
        "metrics-otlp": json.dumps({"requestMetrics": {"protocol": "http/protobuf",
                                                       "endpoint": otlp}}),
        "request-log": json.dumps({"enableRequestLog": True}),
    }


def total_ir(path: str) -> int:
    with open(path) as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {path}")


def run_one(procs: po.Procs, binary: str, backend_port: int, config: str, requests: int,
            conns: int, workdir: str, tag: str) -> int:
    port = po.free_port()
    env = po.queue_proxy_env(port, backend_port, 0, {
        "OBSERVABILITY_CONFIG": config,
        "QUEUE_PROXY_WORKER_THREADS": "1",
        "QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS": "0",
    })
    out = os.path.join(workdir, f"callgrind.{tag}.out")
    log = os.path.join(workdir, f"{tag}.log")
    p = procs.start(tag, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          binary], env, log)
    po.wait_ready(tag, port, p, log, timeout=120)
    # The same warm-up in both runs: pools, lazily built state, first allocations.
    subprocess.run(["hey", "-n", "200", "-c", str(conns), f"http://127.0.0.1:{port}/"],
                   capture_output=True, check=True)
    if requests:
        subprocess.run(["hey", "-n", str(requests), "-c", str(conns),
                        f"http://127.0.0.1:{port}/"], capture_output=True, check=True)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120)
    return total_ir(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("-n", "--requests", type=int, default=20000)
    ap.add_argument("-c", "--connections", type=int, default=10)
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--keep", action="store_true",
                    help="keep the callgrind outputs (for callgrind_annotate) and print where")
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "telemetry_instructions.json"))
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="qp-callgrind-")
    procs = po.Procs()
    results = {}
    try:
        backend_port = po.free_port()
        backend = po.start_nginx(procs, "backend", workdir,
                                 po.NGINX_BACKEND.format(port=backend_port))
        po.wait_ready("backend", backend_port, backend,
                      os.path.join(workdir, "backend", "error.log"))
        wanted = variants(po.free_port())
        if args.only:
            wanted = {k: v for k, v in wanted.items() if k in args.only.split(",")}
        for name, config in wanted.items():
            base = run_one(procs, args.bin, backend_port, config, 0, args.connections,
                           workdir, f"{name}-idle")
            loaded = run_one(procs, args.bin, backend_port, config, args.requests,
                             args.connections, workdir, f"{name}-load")
            per_req = (loaded - base) / args.requests
            results[name] = {"ir_idle": base, "ir_loaded": loaded, "ir_per_request": per_req}
            print(f"{name:20s} {per_req:10.0f} instructions/request", flush=True)
        if "plain" in results:
            print()
            for name, r in results.items():
                print(f"{name:20s} {r['ir_per_request'] / results['plain']['ir_per_request']:.3f}"
                      " x plain")
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "args": vars(args), "results": results}, f, indent=1)
        return 0
    finally:
        procs.stop_all()
        if args.keep:
            print(f"callgrind outputs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
