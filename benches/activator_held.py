#!/usr/bin/env python3
"""Activator figures with the real binaries (stdlib only; needs wrk and nginx).

1. RSS with N requests held: a revision with no endpoints, N clients each
   sending one request and waiting; the activator's VmRSS is read from /proc.
2. Warm path: wrk against the app (nginx) through queue-proxy alone and through
   activator -> queue-proxy, targets alternated, medians.

    cargo build --release -p activator -p queue-proxy
    python3 benches/activator_held.py [--held 10000] [--reps 3] [--duration 5]
"""
import argparse, asyncio, json, os, re, signal, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
import proxy_overhead as po  # nginx helpers, free ports, wrk parsing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QP = os.path.join(ROOT, "target/release/queue-proxy")
ACT = os.path.join(ROOT, "target/release/activator")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")


def start_activator(procs, wd, revisions):
    src = os.path.join(wd, "revisions.json")
    with open(src, "w") as f:
        json.dump({"revisions": revisions}, f)
    port = po.free_port()
    env = {
        "POD_NAME": "activator-bench", "POD_IP": "127.0.0.1", "SYSTEM_NAMESPACE": "knative-serving",
        "ACTIVATOR_HTTP_PORT": str(port), "ACTIVATOR_H2C_PORT": str(po.free_port()),
        "ACTIVATOR_STATIC_SOURCE": src, "ACTIVATOR_DRAIN_TIMEOUT_MS": "0",
        "ACTIVATOR_AUTOSCALER_URL": f"ws://127.0.0.1:{po.free_port()}",
    }
    p = procs.start("activator", [ACT], env, os.path.join(wd, "activator.log"))
    wait_port(port)
    return port, p


async def hold(port, n, host):
    req = (f"GET / HTTP/1.1\r\nHost: {host}\r\nKnative-Serving-Namespace: default\r\n"
           f"Knative-Serving-Revision: cold\r\n\r\n").encode()
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(req)
        conns.append(w)
        if i % 500 == 0:
            await asyncio.sleep(0)
    for w in conns:
        await w.drain()
    return conns


def held_rss(args, procs, wd):
    port, act = start_activator(procs, wd, [{"namespace": "default", "name": "cold",
                                               "containerConcurrency": 10, "timeoutSeconds": 600}])
    time.sleep(0.5)
    idle = rss_kib(act.pid)
    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(hold(port, args.held, "x"))
    time.sleep(2)
    held = rss_kib(act.pid)
    for w in conns:
        w.close()
    loop.close()
    return idle, held


def warm(args, procs, wd):
    bport = po.free_port()
    b = po.start_nginx(procs, "backend", wd, po.NGINX_BACKEND.format(port=bport))
    po.wait_ready("backend", bport, b, os.path.join(wd, "backend/error.log"))
    qport = po.free_port()
    env = po.queue_proxy_env(qport, bport, 0, {"QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS": "0"})
    procs.start("qp", [QP], env, os.path.join(wd, "qp.log"))
    wait_port(qport)
    aport, act = start_activator(procs, wd, [{"namespace": "default", "name": "warm",
                                                "containerConcurrency": 0,
                                                "ready": [f"127.0.0.1:{qport}"]}])
    time.sleep(1)
    hdr = ["-H", "Knative-Serving-Namespace: default", "-H", "Knative-Serving-Revision: warm"]
    targets = {"queue-proxy": (qport, []), "activator+queue-proxy": (aport, hdr)}
    results = {name: [] for name in targets}
    for rep in range(args.reps):
        order = list(targets)[rep % 2:] + list(targets)[:rep % 2]
        for name in order:
            port, extra = targets[name]
            out = subprocess.run(["wrk", "-t1", "-c10", f"-d{args.duration}s", "--latency", *extra,
                                  f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            results[name].append(rps)
            print(f"  rep={rep} {name:24s} rps={rps:9.0f} non2xx={non2xx.group(1) if non2xx else 0}", flush=True)
    return {name: sorted(v)[len(v) // 2] for name, v in results.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--held", type=int, default=10000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    for b in (QP, ACT):
        if not os.path.exists(b):
            raise SystemExit(f"missing {b}: run cargo build --release -p activator -p queue-proxy")
    procs = po.Procs()
    wd = tempfile.mkdtemp(prefix="actbench-")
    try:
        idle, held = held_rss(args, procs, wd)
        procs.stop_all()
        print(f"RSS: idle {idle / 1024:.1f} MiB, with {args.held} held requests {held / 1024:.1f} MiB "
              f"({(held - idle) * 1024 / args.held:.0f} bytes per held request)")
        procs = po.Procs()
        med = warm(args, procs, wd)
        ratio = med["activator+queue-proxy"] / med["queue-proxy"]
        print(f"warm path medians: queue-proxy {med['queue-proxy']:.0f} rps, activator+queue-proxy "
              f"{med['activator+queue-proxy']:.0f} rps ({ratio:.2f}x)")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
