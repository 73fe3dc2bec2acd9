#!/usr/bin/env python3
"""Side-by-side proxy overhead benchmark: direct nginx vs nginx proxy vs queue-proxy.

Python 3 stdlib only. Needs `wrk` and `nginx` on PATH (Debian: `apt-get install -y wrk
nginx-light`) and a release build of queue-proxy (`cargo build --release -p queue-proxy`).
It builds nothing itself. See benches/README.md for the method.

Every target is wrk'd with `wrk -t1 -c<C> -d<D>s --latency`; for each connection count and
each repetition the targets run one after another in an order rotated per repetition, so
slow drifts in the (shared, noisy) machine's load hit every target alike. Medians over the
repetitions are reported, plus ratios of queue-proxy to the nginx proxy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_BIN = os.path.join(REPO, "target", "release", "queue-proxy")
DEFAULT_OUT = os.path.join(HERE, "results", "latest.json")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- /proc helpers

def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def system_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU-seconds summed over all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    vals = [int(x) for x in parts[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest* are already
    # included in user/nice.
    total = sum(vals[:8])
    idle = vals[3] + vals[4]
    return (total - idle) / CLK_TCK, total / CLK_TCK


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes

class Procs:
    """Every process we start, so that they can all be stopped on any exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None, log_path: str,
              cwd: str | None = None) -> subprocess.Popen:
        log = open(log_path, "wb")
        p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        log.close()
        self.procs.append((name, p))
        return p

    def stop_all(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3.0
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # queue-proxy drains on SIGTERM (like upstream); don't wait for that.
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs.clear()


def http_ok(port: int, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as r:
            r.read()
            return r.status == 200
    except (urllib.error.URLError, OSError, ConnectionError):
        return False


def wait_ready(name: str, port: int, proc: subprocess.Popen, log_path: str,
               timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; log:\n"
                               + open(log_path, errors="replace").read()[-3000:])
        if http_ok(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer 200 on port {port} within {timeout}s; log:\n"
                       + open(log_path, errors="replace").read()[-3000:])


NGINX_COMMON = """\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
{body}
}}
"""

NGINX_BACKEND = """\
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok"; }}
    }}"""

NGINX_PROXY = """\
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def start_nginx(procs: Procs, name: str, workdir: str, body: str) -> subprocess.Popen:
    prefix = os.path.join(workdir, name)
    os.makedirs(prefix, exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_COMMON.format(prefix=prefix, body=body))
    # -e: the error log before the config is read (else /var/log/nginx/error.log).
    argv = ["nginx", "-p", prefix + "/", "-c", conf, "-e", os.path.join(prefix, "error.log")]
    return procs.start(name, argv, None, os.path.join(prefix, "stdout.log"))


def queue_proxy_env(serving_port: int, user_port: int, cc: int,
                    extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONTAINER_CONCURRENCY": str(cc),
        "QUEUE_SERVING_PORT": str(serving_port),
        "QUEUE_SERVING_TLS_PORT": "8112",
        "USER_PORT": str(user_port),
        "REVISION_TIMEOUT_SECONDS": "300",
        "SERVING_LOGGING_CONFIG": "",
        "SERVING_LOGGING_LEVEL": "",
        "SERVING_NAMESPACE": "default",
        "SERVING_CONFIGURATION": "c",
        "SERVING_REVISION": "r",
        "SERVING_POD": "p",
        "SERVING_POD_IP": "127.0.0.1",
        "QUEUE_PROXY_ADMIN_PORT": str(free_port()),
        "QUEUE_PROXY_METRICS_PORT": str(free_port()),
    }
    env.update(extra)
    return env


# Observability variants of the queue-proxy target (spec §8b, §9): each sets
# OBSERVABILITY_CONFIG. OTLP endpoints point at a closed port: sampled-out requests
# never export, and for sampled ones the spans are still built and batched (the
# export then fails fast, once per batch), which is the request-path cost.
def telemetry_targets(closed_port: int) -> dict[str, str]:
    otlp = f"http://127.0.0.1:{closed_port}"
    return {
        # Prometheus request metrics on :9091 plus the request log (default template).
        "queue-proxy-obs": json.dumps({
            "requestMetrics": {"protocol": "prometheus", "endpoint": f":{free_port()}"},
            "enableRequestLog": True}),
        # Request metrics only / request log only.
        "queue-proxy-metrics": json.dumps({
            "requestMetrics": {"protocol": "prometheus", "endpoint": f":{free_port()}"}}),
        "queue-proxy-log": json.dumps({"enableRequestLog": True}),
        # Request metrics pushed over OTLP every 60 s (recording only, in practice).
        "queue-proxy-otlpm": json.dumps({
            "requestMetrics": {"protocol": "http/protobuf", "endpoint": otlp}}),
        # Tracing on, every request sampled out: context extracted and re-injected.
        "queue-proxy-trace0": json.dumps({
            "tracing": {"protocol": "http/protobuf", "endpoint": otlp, "samplingRate": 0}}),
        # Tracing on, every request sampled: four spans per request.
        "queue-proxy-trace1": json.dumps({
            "tracing": {"protocol": "http/protobuf", "endpoint": otlp, "samplingRate": 1}}),
    }


# --------------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"cannot parse wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", out, re.M)
    res["requests"] = int(m.group(1)) if m else None
    res["elapsed_ms"] = to_ms(m.group(2)) if m else None
    dist = re.search(r"Latency Distribution\s*\n((?:\s+\d+%\s+\S+\s*\n)+)", out)
    if dist:
        for pct, val in re.findall(r"(\d+)%\s+(\S+)", dist.group(1)):
            res[f"p{pct}_ms"] = to_ms(val)
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


class RssSampler(threading.Thread):
    """Samples VmRSS of some pids every `interval` seconds, keeping the max (KiB)."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.max_kib: dict[str, int] = {name: 0 for name in pids}
        self.active = threading.Event()
        self.stopped = threading.Event()

    def sample(self) -> None:
        for name, pid in self.pids.items():
            v = proc_status_kib(pid, "VmRSS")
            if v is not None and v > self.max_kib[name]:
                self.max_kib[name] = v

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            if self.active.is_set():
                self.sample()


def run_wrk(port: int, conns: int, duration: int, timeout_s: int = 10) -> tuple[dict, float]:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency",
            f"--timeout={timeout_s}s", f"http://127.0.0.1:{port}/"]
    before = children_cpu_seconds()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    wrk_cpu = children_cpu_seconds() - before
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr}\n{p.stdout}")
    res = parse_wrk(p.stdout)
    res["raw"] = p.stdout
    return res, wrk_cpu


# --------------------------------------------------------------------------- targets

class Target:
    def __init__(self, name: str, port: int, proxy_pid: int | None, kind: str,
                 env_extra: dict[str, str] | None = None, binary: str | None = None) -> None:
        self.name = name
        self.port = port
        self.proxy_pid = proxy_pid  # the process whose CPU counts; None for direct
        self.kind = kind            # direct | nginx | queue-proxy
        self.env_extra = env_extra or {}
        self.binary = binary


def median(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=DEFAULT_BIN, help="queue-proxy binary (default: %(default)s)")
    ap.add_argument("--compare-bin", help="another queue-proxy binary, as an extra target")
    ap.add_argument("--compare-name", default="queue-proxy-cmp",
                    help="name of the --compare-bin target; must start with 'queue-proxy' "
                         "(default: %(default)s)")
    ap.add_argument("-c", "--connections", default="1,10,50",
                    help="comma-separated wrk connection counts (default: %(default)s)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="repetitions (default: %(default)s)")
    ap.add_argument("-d", "--duration", type=int, default=10,
                    help="seconds per wrk run (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of warmup per target and connection count (default: %(default)s)")
    ap.add_argument("--targets",
                    default="direct,nginx-proxy,queue-proxy,queue-proxy-1t,queue-proxy-cc10,"
                            "queue-proxy-arena2",
                    help="comma-separated targets among direct, nginx-proxy, queue-proxy, "
                         "queue-proxy-1t (QUEUE_PROXY_WORKER_THREADS=1), queue-proxy-cc10 "
                         "(CONTAINER_CONCURRENCY=10), queue-proxy-arena2 (MALLOC_ARENA_MAX=2), "
                         "and the observability variants queue-proxy-obs (request metrics + "
                         "request log), -metrics, -log, -otlpm (OTLP metrics push), -trace0 "
                         "(tracing, samplingRate 0), -trace1 (samplingRate 1) "
                         "(default: %(default)s); queue-proxy-cmp is added with --compare-bin")
    ap.add_argument("--out", default=DEFAULT_OUT, help="raw JSON results (default: %(default)s)")
    ap.add_argument("--note", default="",
                    help="free text stored in the JSON, e.g. which commit the binary was built from")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()

    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"error: `{tool}` not found; on Debian: apt-get install -y wrk nginx-light",
                  file=sys.stderr)
            return 2
    bins = [args.bin] + ([args.compare_bin] if args.compare_bin else [])
    for b in bins:
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            print(f"error: queue-proxy binary {b} not found; build it with "
                  "`cargo build --release -p queue-proxy` (or pass --bin PATH)", file=sys.stderr)
            return 2

    conns_list = [int(x) for x in args.connections.split(",") if x]
    wanted = [t for t in args.targets.split(",") if t]
    if args.compare_bin:
        if not args.compare_name.startswith("queue-proxy") or args.compare_name in wanted:
            print("error: --compare-name must start with 'queue-proxy' and be new",
                  file=sys.stderr)
            return 2
        wanted.append(args.compare_name)
    telemetry = telemetry_targets(free_port())
    known = {"direct", "nginx-proxy", "queue-proxy", "queue-proxy-1t", "queue-proxy-cc10",
             "queue-proxy-arena2", args.compare_name} | set(telemetry)
    bad = [t for t in wanted if t not in known]
    if bad:
        print(f"error: unknown target(s) {bad}", file=sys.stderr)
        return 2

    # SIGINT/SIGTERM/SIGHUP -> exception, so that `finally` cleans up. SIGINT is set
    # explicitly: a shell's background job starts with it ignored.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    workdir = tempfile.mkdtemp(prefix="qp-bench-")
    procs = Procs()
    sampler: RssSampler | None = None
    try:
        # Backend.
        backend_port = free_port()
        backend = start_nginx(procs, "backend", workdir, NGINX_BACKEND.format(port=backend_port))
        wait_ready("backend", backend_port, backend, os.path.join(workdir, "backend", "error.log"))

        targets: list[Target] = []
        for name in wanted:
            if name == "direct":
                targets.append(Target(name, backend_port, None, "direct"))
            elif name == "nginx-proxy":
                port = free_port()
                p = start_nginx(procs, name, workdir,
                                NGINX_PROXY.format(port=port, backend=backend_port))
                wait_ready(name, port, p, os.path.join(workdir, name, "error.log"))
                targets.append(Target(name, port, p.pid, "nginx"))
            else:
                extra: dict[str, str] = {}
                cc = 0
                binary = args.bin
                if name == "queue-proxy-1t":
                    extra["QUEUE_PROXY_WORKER_THREADS"] = "1"
                elif name == "queue-proxy-cc10":
                    cc = 10
                elif name == "queue-proxy-arena2":
                    extra["MALLOC_ARENA_MAX"] = "2"
                elif name == args.compare_name:
                    binary = args.compare_bin
                elif name in telemetry:
                    extra["OBSERVABILITY_CONFIG"] = telemetry[name]
                port = free_port()
                env = queue_proxy_env(port, backend_port, cc, extra)
                log = os.path.join(workdir, f"{name}.log")
                p = procs.start(name, [binary], env, log)
                wait_ready(name, port, p, log)
                targets.append(Target(name, port, p.pid, "queue-proxy", extra, binary))

        # Let everything settle, then idle RSS (after only the readiness request).
        time.sleep(1.0)
        idle_rss = {t.name: proc_status_kib(t.proxy_pid, "VmRSS")
                    for t in targets if t.proxy_pid}
        idle_rss["backend"] = proc_status_kib(backend.pid, "VmRSS")
        # RssAnon: heap, stacks, buffers; the rest of VmRSS is mapped files (the binary's
        # and shared libraries' pages), which nginx shares with every nginx on the node.
        idle_anon = {t.name: proc_status_kib(t.proxy_pid, "RssAnon")
                     for t in targets if t.proxy_pid}
        idle_anon["backend"] = proc_status_kib(backend.pid, "RssAnon")
        rss_pids = {t.name: t.proxy_pid for t in targets if t.proxy_pid}
        rss_pids["backend"] = backend.pid
        sampler = RssSampler(rss_pids)
        sampler.start()

        n_runs = len(conns_list) * (args.reps * len(targets))
        est = len(conns_list) * len(targets) * (args.reps * (args.duration + 1) + args.warmup + 1)
        print(f"# {len(targets)} targets x {len(conns_list)} connection counts x {args.reps} reps"
              f" = {n_runs} runs of {args.duration}s; ~{est / 60:.1f} min", flush=True)
        for t in targets:
            print(f"#   {t.name:20s} port {t.port}  pid {t.proxy_pid}", flush=True)

        runs: list[dict] = []
        sampler.active.set()
        for conns in conns_list:
            for t in targets:  # warmup, not recorded
                run_wrk(t.port, conns, args.warmup)
            for rep in range(args.reps):
                k = rep % len(targets)
                order = targets[k:] + targets[:k]
                for t in order:
                    cpu0 = proc_cpu_seconds(t.proxy_pid) if t.proxy_pid else None
                    b0 = proc_cpu_seconds(backend.pid)
                    sys0 = system_busy_seconds()
                    res, wrk_cpu = run_wrk(t.port, conns, args.duration)
                    sys1 = system_busy_seconds()
                    b1 = proc_cpu_seconds(backend.pid)
                    cpu1 = proc_cpu_seconds(t.proxy_pid) if t.proxy_pid else None
                    proxy_cpu = (cpu1 - cpu0) if t.proxy_pid else None
                    reqs = res["requests"] or 0
                    busy = sys1[0] - sys0[0]
                    wall = (sys1[1] - sys0[1]) / (os.cpu_count() or 1)
                    ours = (proxy_cpu or 0.0) + (b1 - b0) + wrk_cpu
                    run = {
                        "target": t.name, "connections": conns, "rep": rep,
                        "order": [x.name for x in order],
                        "rps": res["rps"], "requests": reqs,
                        "p50_ms": res.get("p50_ms"), "p75_ms": res.get("p75_ms"),
                        "p90_ms": res.get("p90_ms"), "p99_ms": res.get("p99_ms"),
                        "non_2xx": res["non_2xx"], "socket_errors": res["socket_errors"],
                        "proxy_cpu_s": proxy_cpu,
                        "proxy_cpu_s_per_10k": (proxy_cpu / reqs * 1e4)
                        if proxy_cpu is not None and reqs else None,
                        "backend_cpu_s": b1 - b0,
                        "wrk_cpu_s": wrk_cpu,
                        "system_busy_cpu_s": busy,
                        # CPU used by everything else on the machine meanwhile (noise).
                        "foreign_cpu_s": max(0.0, busy - ours),
                        "wall_s": wall,
                        "wrk_output": res["raw"],
                    }
                    runs.append(run)
                    print(f"c={conns:<3d} rep={rep} {t.name:20s} rps={fmt(run['rps'], '10.0f')}"
                          f" p50={fmt(run['p50_ms'], '.3f')}ms p99={fmt(run['p99_ms'], '.3f')}ms"
                          f" cpu/10k={fmt(run['proxy_cpu_s_per_10k'], '.3f')}s"
                          f" foreign={run['foreign_cpu_s']:.1f}s"
                          + (f" ERR non2xx={run['non_2xx']} sock={run['socket_errors']}"
                             if run["non_2xx"] or run["socket_errors"] else ""), flush=True)
        sampler.active.clear()
        sampler.sample()
        after_rss = {name: proc_status_kib(pid, "VmRSS") for name, pid in rss_pids.items()}
        after_anon = {name: proc_status_kib(pid, "RssAnon") for name, pid in rss_pids.items()}
        hwm = {name: proc_status_kib(pid, "VmHWM") for name, pid in rss_pids.items()}
        max_rss = dict(sampler.max_kib)

        summary = summarize(targets, conns_list, runs, idle_rss, after_rss, max_rss, hwm,
                            idle_anon, after_anon)
        report(summary, conns_list, [t.name for t in targets])

        out = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                        "cpu_model": cpu_model()},
            "args": vars(args),
            "binaries": {t.name: binary_info(t.binary) for t in targets if t.binary},
            # The work tree's state when the run ended; the binary may come from elsewhere.
            "worktree_git": git_info(),
            "note": args.note,
            "env_extra": {t.name: t.env_extra for t in targets if t.env_extra},
            "rss_kib": {"idle": idle_rss, "after_load": after_rss, "max_sampled": max_rss,
                        "vm_hwm": hwm, "idle_anon": idle_anon, "after_load_anon": after_anon},
            "summary": summary,
            "runs": runs,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"\nraw results: {args.out}")
        return 0
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e}); cleaning up", file=sys.stderr)
        return 130
    finally:
        if sampler is not None:
            sampler.stopped.set()
        procs.stop_all()
        if args.keep_tmp:
            print(f"temp dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def binary_info(path: str) -> dict:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    st = os.stat(path)
    return {"path": os.path.abspath(path), "sha256": h.hexdigest(), "size": st.st_size,
            "mtime": datetime.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds")}


def git_info() -> dict | None:
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "queue-proxy"],
                               capture_output=True, text=True, timeout=10).stdout
        return {"head": head, "queue_proxy_dirty": bool(dirty.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- reporting

METRICS = ["rps", "p50_ms", "p90_ms", "p99_ms", "proxy_cpu_s_per_10k", "backend_cpu_s",
           "foreign_cpu_s"]


def summarize(targets, conns_list, runs, idle_rss, after_rss, max_rss, hwm, idle_anon,
              after_anon) -> dict:
    med: dict = {}
    for t in targets:
        med[t.name] = {}
        for c in conns_list:
            rs = [r for r in runs if r["target"] == t.name and r["connections"] == c]
            med[t.name][str(c)] = {m: median([r[m] for r in rs]) for m in METRICS}
            med[t.name][str(c)]["n"] = len(rs)
            med[t.name][str(c)]["errors"] = sum(r["non_2xx"] + r["socket_errors"] for r in rs)
    ratios: dict = {}
    names = [t.name for t in targets]
    if "nginx-proxy" in names:
        for qp in [n for n in names if n.startswith("queue-proxy")]:
            ratios[qp] = {}
            for c in conns_list:
                q, n = med[qp][str(c)], med["nginx-proxy"][str(c)]
                d = med.get("direct", {}).get(str(c))
                entry = {
                    "rps_ratio": ratio(q["rps"], n["rps"]),
                    "cpu_per_req_ratio": ratio(q["proxy_cpu_s_per_10k"], n["proxy_cpu_s_per_10k"]),
                }
                if d and d["p50_ms"] is not None:
                    qa = q["p50_ms"] - d["p50_ms"]
                    na = n["p50_ms"] - d["p50_ms"]
                    entry.update({"p50_added_ms": qa, "nginx_p50_added_ms": na,
                                  "p50_added_ratio": ratio(qa, na)})
                ratios[qp][str(c)] = entry
    # Per-run ratios too, pairing each qp run with the nginx-proxy run of the same rep, to
    # show the spread of the ratio (each pair ran within ~a minute of each other).
    spread: dict = {}
    if "nginx-proxy" in names:
        for qp in [n for n in names if n.startswith("queue-proxy")]:
            spread[qp] = {}
            for c in conns_list:
                rr = []
                for rep in sorted({r["rep"] for r in runs}):
                    q = [r for r in runs if r["target"] == qp and r["connections"] == c
                         and r["rep"] == rep]
                    n = [r for r in runs if r["target"] == "nginx-proxy"
                         and r["connections"] == c and r["rep"] == rep]
                    if q and n:
                        rr.append(ratio(q[0]["rps"], n[0]["rps"]))
                spread[qp][str(c)] = {"rps_ratio_per_rep": rr}
    # The variants against the plain queue-proxy: what each feature costs.
    vs_qp: dict = {}
    if "queue-proxy" in names:
        for v in [n for n in names if n.startswith("queue-proxy-")]:
            vs_qp[v] = {}
            for c in conns_list:
                q, b = med[v][str(c)], med["queue-proxy"][str(c)]
                per_rep = []
                for rep in sorted({r["rep"] for r in runs}):
                    x = [r for r in runs if r["target"] == v and r["connections"] == c
                         and r["rep"] == rep]
                    y = [r for r in runs if r["target"] == "queue-proxy"
                         and r["connections"] == c and r["rep"] == rep]
                    if x and y:
                        per_rep.append(ratio(x[0]["rps"], y[0]["rps"]))
                vs_qp[v][str(c)] = {
                    "rps_ratio": ratio(q["rps"], b["rps"]),
                    "cpu_per_req_ratio": ratio(q["proxy_cpu_s_per_10k"],
                                               b["proxy_cpu_s_per_10k"]),
                    "rps_ratio_per_rep": per_rep,
                }
    return {"medians": med, "ratios_vs_nginx_proxy": ratios, "per_rep": spread,
            "ratios_vs_queue_proxy": vs_qp,
            "rss_mib": {name: {"idle": kib_mib(idle_rss.get(name)),
                               "after_load": kib_mib(after_rss.get(name)),
                               "max_sampled": kib_mib(max_rss.get(name)),
                               "vm_hwm": kib_mib(hwm.get(name)),
                               "idle_anon": kib_mib(idle_anon.get(name)),
                               "after_load_anon": kib_mib(after_anon.get(name))}
                        for name in list(max_rss)}}


def kib_mib(k: int | None) -> float | None:
    return None if k is None else k / 1024.0


def report(s: dict, conns_list: list[int], names: list[str]) -> None:
    med = s["medians"]
    print("\n## Medians per target and connection count")
    print(f"{'target':20s} {'c':>3s} {'req/s':>9s} {'p50 ms':>8s} {'p90 ms':>8s} "
          f"{'p99 ms':>8s} {'CPU s/10k':>9s} {'backend s':>9s} {'foreign s':>9s} {'err':>4s}")
    for c in conns_list:
        for n in names:
            m = med[n][str(c)]
            print(f"{n:20s} {c:3d} {fmt(m['rps'], '9.0f')} {fmt(m['p50_ms'], '8.3f')} "
                  f"{fmt(m['p90_ms'], '8.3f')} {fmt(m['p99_ms'], '8.3f')} "
                  f"{fmt(m['proxy_cpu_s_per_10k'], '9.3f')} {fmt(m['backend_cpu_s'], '9.2f')} "
                  f"{fmt(m['foreign_cpu_s'], '9.2f')} {m['errors']:4d}")
        print()
    r = s["ratios_vs_nginx_proxy"]
    if r:
        print("## Ratios vs nginx-proxy (from medians)")
        print(f"{'target':20s} {'c':>3s} {'RPS x':>7s} {'CPU/req x':>9s} {'qp +p50 ms':>10s} "
              f"{'ngx +p50 ms':>11s} {'+p50 x':>7s}  RPS x per rep")
        for qp in r:
            for c in conns_list:
                e = r[qp][str(c)]
                per = ", ".join(fmt(x) for x in s["per_rep"][qp][str(c)]["rps_ratio_per_rep"])
                print(f"{qp:20s} {c:3d} {fmt(e['rps_ratio'], '7.2f')} "
                      f"{fmt(e['cpu_per_req_ratio'], '9.2f')} "
                      f"{fmt(e.get('p50_added_ms'), '10.3f')} "
                      f"{fmt(e.get('nginx_p50_added_ms'), '11.3f')} "
                      f"{fmt(e.get('p50_added_ratio'), '7.2f')}  [{per}]")
        print()
    v = s.get("ratios_vs_queue_proxy")
    if v:
        print("## Ratios vs the plain queue-proxy (from medians)")
        print(f"{'target':20s} {'c':>3s} {'RPS x':>7s} {'CPU/req x':>9s}  RPS x per rep")
        for t in v:
            for c in conns_list:
                e = v[t][str(c)]
                per = ", ".join(fmt(x) for x in e["rps_ratio_per_rep"])
                print(f"{t:20s} {c:3d} {fmt(e['rps_ratio'], '7.2f')} "
                      f"{fmt(e['cpu_per_req_ratio'], '9.2f')}  [{per}]")
        print()
    print("## RSS (MiB): idle = after startup + one request; after = at the end; "
          "max = max sampled every 0.25 s under load; hwm = VmHWM; anon = RssAnon part")
    print(f"{'process':20s} {'idle':>7s} {'after':>7s} {'max':>7s} {'hwm':>7s} "
          f"{'idle anon':>9s} {'after anon':>10s}")
    for name, v in s["rss_mib"].items():
        print(f"{name:20s} {fmt(v['idle'], '7.2f')} {fmt(v['after_load'], '7.2f')} "
              f"{fmt(v['max_sampled'], '7.2f')} {fmt(v['vm_hwm'], '7.2f')} "
              f"{fmt(v['idle_anon'], '9.2f')} {fmt(v['after_load_anon'], '10.2f')}")


if __name__ == "__main__":
    sys.exit(main())
