#!/usr/bin/env python3
"""Container-env smoke test: the image contents, run as a pod would run them.

No container engine runs where CI runs, so this builds each image's file tree
by hand (deploy/rootfs/ plus the binary at /<name>, as deploy/Dockerfile does),
adds what the container runtime and the kubelet add (/proc, /sys, /dev and the
/etc/hosts, /etc/resolv.conf, /etc/hostname mounts), and starts the binary
chrooted in it: in a private mount namespace with the tree mounted read-only,
as uid/gid 65532 with no supplementary groups, no capabilities and
no_new_privs (what runAsNonRoot, readOnlyRootFilesystem, drop ALL and
allowPrivilegeEscalation: false give). There is no libc, shell or NSS module in
the tree: the static binaries must do without.

queue-proxy gets exactly the 27 variables upstream's reconciler emits
(spec queue-proxy.md section 13), in its order, on its real ports, plus the
PATH and HOSTNAME the runtime adds. A tiny app listens on 127.0.0.1:8080. The
test shows that it serves a request, answers the kubelet's readiness probe and
the autoscaler's :9090 scrape, and drains on SIGTERM (probes fail at once,
requests are still served, exit 0 after the 30 s quiet period).

The activator gets its Deployment's env plus the extensions it needs today:
ACTIVATOR_STATIC_SOURCE (revisions from a file until the Kubernetes source
lands) and ACTIVATOR_HTTP_PORT/ACTIVATOR_H2C_PORT (8012/8013 are the
queue-proxy's on this one host). It reaches a stand-in autoscaler at its
default address, ws://autoscaler.knative-serving.svc.cluster.local:8080,
resolved by a stand-in cluster DNS server named in the kubelet-style
/etc/resolv.conf (search list, ndots:5; no NSS modules in the tree), so the
static glibc binary's DNS path is exercised. It must turn Ready once the websocket is
up, forward a request to the queue-proxy, send stats, and drain on SIGTERM.

Prints RSS and CPU time of both processes (figures only, nothing asserted).
Needs root (chroot, mount namespace). Usage:

    deploy/smoke.py [--bin-dir target/x86_64-unknown-linux-gnu/dist]
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTFS_SKELETON = REPO / "deploy" / "rootfs"
NONROOT = 65532

APP_PORT = 8080
QP_POD = "hello-00001-deployment-5d8f7c9b4-x2xkq"
ACTIVATOR_POD = "activator-7c6b9d5f8-abcde"
AUTOSCALER_IP = "127.0.0.2"  # the stand-in autoscaler's "pod"; 127.0.0.1:8080 is the app
AUTOSCALER_NAME = "autoscaler.knative-serving.svc.cluster.local"
CLUSTER_DNS_IP = "127.0.53.53"  # the stand-in cluster DNS (kube-dns's ClusterIP in a pod's resolv.conf)
ACTIVATOR_HTTP_PORT = 18012
ACTIVATOR_H2C_PORT = 18013
ACTIVATOR_DRAIN_S = 45  # upstream's DefaultDrainTimeout, the activator's default
QP_DRAIN_S = 30  # upstream's drainSleepDuration, the queue-proxy's default

# config-logging's default zap-logger-config, as the reconciler passes it on.
ZAP_CONFIG = json.dumps(
    {
        "level": "info",
        "development": False,
        "outputPaths": ["stdout"],
        "errorOutputPaths": ["stderr"],
        "encoding": "json",
        "encoderConfig": {
            "timeKey": "timestamp",
            "levelKey": "severity",
            "nameKey": "logger",
            "callerKey": "caller",
            "messageKey": "message",
            "stacktraceKey": "stacktrace",
            "lineEnding": "",
            "levelEncoder": "",
            "timeEncoder": "iso8601",
            "durationEncoder": "",
            "nameEncoder": "",
        },
    },
    indent=2,
)

# The 27 variables, in the reconciler's order, with the values it writes for a
# default revision `hello-00001` of Service `hello` in `default` (fieldRefs
# resolved as the kubelet would on this host).
QUEUE_PROXY_ENV = [
    ("SERVING_NAMESPACE", "default"),
    ("SERVING_SERVICE", "hello"),
    ("SERVING_CONFIGURATION", "hello"),
    ("SERVING_REVISION", "hello-00001"),
    ("QUEUE_SERVING_PORT", "8012"),
    ("QUEUE_SERVING_TLS_PORT", "8112"),
    ("CONTAINER_CONCURRENCY", "0"),
    ("REVISION_TIMEOUT_SECONDS", "300"),
    ("REVISION_RESPONSE_START_TIMEOUT_SECONDS", "0"),
    ("REVISION_IDLE_TIMEOUT_SECONDS", "0"),
    ("SERVING_POD", QP_POD),
    ("SERVING_POD_IP", "127.0.0.1"),
    ("SERVING_LOGGING_CONFIG", ZAP_CONFIG),
    ("SERVING_LOGGING_LEVEL", "info"),
    ("USER_PORT", str(APP_PORT)),
    ("SYSTEM_NAMESPACE", "knative-serving"),
    ("SERVING_READINESS_PROBE", '{"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1}'),
    ("HOST_IP", "127.0.0.1"),
    ("ENABLE_HTTP2_AUTO_DETECTION", "false"),
    ("ENABLE_HTTP_FULL_DUPLEX", "false"),
    ("ROOT_CA", ""),
    ("QUEUE_PROXY_TLS_MIN_VERSION", ""),
    ("QUEUE_PROXY_TLS_MAX_VERSION", ""),
    ("QUEUE_PROXY_TLS_CIPHER_SUITES", ""),
    ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", ""),
    ("ENABLE_MULTI_CONTAINER_PROBES", "false"),
    ("OBSERVABILITY_CONFIG", '{"tracing":{},"metrics":{},"runtime":{},"requestMetrics":{}}'),
]
assert len(QUEUE_PROXY_ENV) == 27

RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

STATIC_SOURCE = {
    "revisions": [
        {"namespace": "default", "name": "hello-00001", "containerConcurrency": 0, "ready": ["127.0.0.1:8012"]}
    ]
}

# The activator Deployment's env (upstream's config/core/deployments/activator.yaml,
# fieldRefs resolved), then our extensions.
ACTIVATOR_ENV = [
    ("GOGC", "500"),
    ("POD_NAME", ACTIVATOR_POD),
    ("POD_IP", "127.0.0.1"),
    ("SYSTEM_NAMESPACE", "knative-serving"),
    ("CONFIG_LOGGING_NAME", "config-logging"),
    ("CONFIG_OBSERVABILITY_NAME", "config-observability"),
    ("METRICS_DOMAIN", "knative.dev/internal/serving"),
    ("ACTIVATOR_STATIC_SOURCE", "/etc/activator/revisions.json"),
    ("ACTIVATOR_HTTP_PORT", str(ACTIVATOR_HTTP_PORT)),
    ("ACTIVATOR_H2C_PORT", str(ACTIVATOR_H2C_PORT)),
]


class SmokeFailure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SmokeFailure(what)
    print(f"  ok: {what}")


# ---------------------------------------------------------------------------
# The jail: a single-threaded launcher that becomes the binary (same PID).

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38


def _mount(src: str | None, dst: str, flags: int) -> None:
    if _libc.mount(src and src.encode(), dst.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} {dst}: {os.strerror(err)}")


def jail_exec(root: str, binary: str, env_file: str) -> None:
    """Runs in its own process: namespace, mounts, chroot, drop to 65532, exec."""
    env = json.loads(Path(env_file).read_text())
    mode = "read-only bind mount in a private mount namespace"
    if _libc.unshare(CLONE_NEWNS) == 0:
        _mount(None, "/", MS_REC | MS_PRIVATE)
        _mount(root, root, MS_BIND | MS_REC)
        _mount(None, root, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        # What the runtime mounts into every container.
        _mount("/proc", f"{root}/proc", MS_BIND | MS_REC)
        _mount("/sys", f"{root}/sys", MS_BIND | MS_REC)
        _mount(None, f"{root}/sys", MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount("/dev", f"{root}/dev", MS_BIND | MS_REC)
    else:
        mode = "no mount namespace here: tree owned by root, mode 0555, unwritable for 65532"
    print(f"  jail: {mode}", file=sys.stderr, flush=True)
    os.chroot(root)
    os.chdir("/")
    os.setgroups([])
    os.setgid(NONROOT)
    os.setuid(NONROOT)  # from root to non-root: all capabilities go
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.execve(binary, [binary], env)


def build_rootfs(parent: Path, name: str, binary: Path, hostname: str, extra: dict[str, str]) -> Path:
    """The image's tree (Dockerfile: COPY deploy/rootfs/ /, the binary 0555 at /<name>)
    plus the runtime's mount points and the kubelet's /etc files."""
    root = parent / name
    shutil.copytree(ROOTFS_SKELETON, root)
    shutil.copy2(binary, root / name)
    for d in ("proc", "sys", "dev"):
        (root / d).mkdir()
    kubelet_files = {
        "etc/hosts": (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"127.0.0.1\t{hostname}\n"
        ),
        "etc/resolv.conf": (
            "search knative-serving.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {CLUSTER_DNS_IP}\noptions ndots:5\n"
        ),
        "etc/hostname": hostname + "\n",
        **extra,
    }
    for rel, text in kubelet_files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in [root, *root.rglob("*")]:
        os.chown(path, 0, 0, follow_symlinks=False)
        if path.is_dir():
            path.chmod(0o555)
        else:
            path.chmod(0o555 if path.name == name else 0o444)
    return root


class Jailed:
    """One binary, started through the jail."""

    def __init__(self, name: str, root: Path, env: list[tuple[str, str]], hostname: str, workdir: Path):
        self.name = name
        full_env = dict(env)
        full_env.setdefault("PATH", RUNTIME_PATH)
        full_env.setdefault("HOSTNAME", hostname)
        env_file = workdir / f"{name}.env.json"
        env_file.write_text(json.dumps(full_env))
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "jail", str(root), f"/{name}", str(env_file)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={},
        )
        self.pid = self.proc.pid

    def status(self) -> dict[str, str]:
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def rss_mib(self) -> float:
        return int(self.status()["VmRSS"].split()[0]) / 1024

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def check_confinement(p: Jailed, root: Path) -> None:
    st = p.status()
    check(st["Uid"].split() == [str(NONROOT)] * 4, f"{p.name} runs as uid {NONROOT} (Uid: {st['Uid']})")
    check(st["Gid"].split() == [str(NONROOT)] * 4, f"{p.name} runs as gid {NONROOT}, groups [{st['Groups']}]")
    check(st["Groups"] == "", f"{p.name} has no supplementary groups")
    check(int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, f"{p.name} has no capabilities")
    check(st["NoNewPrivs"] == "1", f"{p.name} has no_new_privs")
    check(os.readlink(f"/proc/{p.pid}/root") == str(root), f"{p.name} is chrooted in its image tree")
    check(os.readlink(f"/proc/{p.pid}/cwd") == str(root), f"{p.name}'s working directory is the tree's /")
    mounts = Path(f"/proc/{p.pid}/mountinfo").read_text().splitlines()
    # Mount points are shown relative to the process's root: its tree is "/".
    root_mount = [m.split() for m in mounts if m.split()[4] == "/"]
    if root_mount:
        check("ro" in root_mount[-1][5].split(","), f"{p.name}'s / is mounted read-only")
    else:
        check(root.stat().st_mode & 0o222 == 0 and root.stat().st_uid == 0, f"{p.name}'s / is not writable")


# ---------------------------------------------------------------------------
# The peers: the app, and a stand-in autoscaler's websocket end.


class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"hello from the app\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class StandInAutoscaler:
    """Accepts the activator's websocket and counts its binary frames (stats)."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, addr: tuple[str, int]):
        self.sock = socket.create_server(addr)
        self.connections = 0
        self.frames = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        key = b""
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.connections += 1
        try:
            while header := f.read(2):
                opcode, length = header[0] & 0x0F, header[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", f.read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", f.read(8))[0]
                f.read((4 if header[1] & 0x80 else 0) + length)  # mask key and payload, unread
                if opcode == 0x2:
                    self.frames += 1
                elif opcode == 0x8:
                    return
        except OSError:
            return


class StandInDns:
    """The cluster DNS, for one name: A records for `names`, NXDOMAIN for other
    names (the resolver walks the search list first, ndots:5), no data for
    other types (AAAA). Records every name asked."""

    def __init__(self, addr: tuple[str, int], names: dict[str, str]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.names = names
        self.asked: list[tuple[str, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            query, peer = self.sock.recvfrom(512)
            labels, i = [], 12
            while query[i]:
                labels.append(query[i + 1 : i + 1 + query[i]].decode())
                i += 1 + query[i]
            qtype = struct.unpack("!H", query[i + 1 : i + 3])[0]
            question = query[12 : i + 5]
            name = ".".join(labels).lower()
            self.asked.append((name, qtype))
            answer = b""
            if name in self.names and qtype == 1:
                answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(self.names[name])
            rcode = 0 if name in self.names else 3
            header = query[:2] + struct.pack("!HHHHH", 0x8580 | rcode, 1, 1 if answer else 0, 0, 0)
            self.sock.sendto(header + question + answer, peer)


# ---------------------------------------------------------------------------
# Clients.


def get(port: int, path: str = "/", headers: dict[str, str] | None = None, host: str = "127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def wait_for(what: str, cond, timeout: float = 15.0, proc: Jailed | None = None):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise SmokeFailure(f"{proc.name} exited ({proc.proc.returncode}) waiting for {what}:\n{proc.tail()}")
        try:
            result = cond()
            if result:
                return result
            last = result
        except OSError as err:
            last = err
        time.sleep(0.05)
    raise SmokeFailure(f"timed out waiting for {what} (last: {last!r})")


def decode_stat(body: bytes) -> dict[int, object]:
    """metrics.Stat: field 1 string, 2..6 double, 7 varint."""
    out: dict[int, object] = {}
    i = 0
    while i < len(body):
        tag = body[i]
        field, wire = tag >> 3, tag & 7
        i += 1
        if wire == 2:
            n = body[i]
            out[field] = body[i + 1 : i + 1 + n].decode()
            i += 1 + n
        elif wire == 1:
            out[field] = struct.unpack("<d", body[i : i + 8])[0]
            i += 8
        elif wire == 0:
            value, shift = 0, 0
            while True:
                b = body[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out[field] = value
        else:
            raise SmokeFailure(f"unexpected wire type {wire} in Stat {body!r}")
    return out


KUBELET_QP_PROBE = {"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.34"}
KUBELET_ACTIVATOR_PROBE = {"K-Kubelet-Probe": "activator", "User-Agent": "kube-probe/1.34"}
AUTOSCALER_SCRAPE = {"Accept": "application/protobuf"}
VIA_ACTIVATOR = {"Knative-Serving-Namespace": "default", "Knative-Serving-Revision": "hello-00001"}


def ports_free(ports: list[tuple[str, int]]) -> list[tuple[str, int]]:
    busy = []
    for host, port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append((host, port))
    return busy


def measure_footprint(qp: Jailed, act: Jailed) -> None:
    """wrk at a few connection counts through each binary: RSS (peak sampled every
    0.1 s and after) and CPU-s per 10k requests. Figures behind deploy/'s
    resource requests; nothing asserted. The app is this script's Python server,
    so the request rates are the app's, not the proxies'."""
    if shutil.which("wrk") is None:
        raise SmokeFailure("--footprint needs wrk (apt-get install wrk)")
    print("== footprint (wrk -t1 -d10s)")
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua.write_text("".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in VIA_ACTIVATOR.items()))
    for p, port, script in ((qp, 8012, None), (act, ACTIVATOR_HTTP_PORT, lua)):
        for conns in (1, 50, 500):
            cpu0, peak = p.cpu_s(), p.rss_mib()
            cmd = ["wrk", "-t1", f"-c{conns}", "-d10s", f"http://127.0.0.1:{port}/"]
            if script:
                cmd[1:1] = ["-s", str(script)]
            wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            while wrk.poll() is None:
                peak = max(peak, p.rss_mib())
                time.sleep(0.1)
            out = wrk.stdout.read() if wrk.stdout else ""
            reqs = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
            bad = [line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
            cpu = p.cpu_s() - cpu0
            print(
                f"  {p.name} c{conns}: {reqs / 10:.0f} req/s, {10000 * cpu / max(reqs, 1):.3f} CPU-s/10k req, "
                f"VmRSS peak {peak:.1f} MiB, after {p.rss_mib():.1f} MiB {bad}"
            )
    lua.unlink()


def smoke(bin_dir: Path, footprint: bool) -> None:
    if os.geteuid() != 0:
        raise SmokeFailure("needs root: it chroots and mounts, then drops to uid 65532")
    busy = ports_free(
        [("0.0.0.0", p) for p in (8012, 8022, 9090, ACTIVATOR_HTTP_PORT, ACTIVATOR_H2C_PORT)]
        + [("127.0.0.1", APP_PORT), (AUTOSCALER_IP, 8080)]
    )
    if busy:
        raise SmokeFailure(f"ports in use (the smoke test uses upstream's real ports): {busy}")

    workdir = Path(tempfile.mkdtemp(prefix="smoke-"))
    os.chmod(workdir, 0o755)
    procs: list[Jailed] = []
    app = http.server.ThreadingHTTPServer(("127.0.0.1", APP_PORT), App)
    app.handle_error = lambda *_: None  # clients that hang up (wrk at its end) are not news
    threading.Thread(target=app.serve_forever, daemon=True).start()
    autoscaler = StandInAutoscaler((AUTOSCALER_IP, 8080))
    dns = StandInDns((CLUSTER_DNS_IP, 53), {AUTOSCALER_NAME: AUTOSCALER_IP})
    try:
        qp_root = build_rootfs(workdir, "queue-proxy", bin_dir / "queue-proxy", QP_POD, {})
        act_root = build_rootfs(
            workdir,
            "activator",
            bin_dir / "activator",
            ACTIVATOR_POD,
            {"etc/activator/revisions.json": json.dumps(STATIC_SOURCE)},
        )

        print("== queue-proxy: upstream's 27 env vars, real ports, chrooted read-only, uid 65532")
        t0 = time.monotonic()
        qp = Jailed("queue-proxy", qp_root, QUEUE_PROXY_ENV, QP_POD, workdir)
        procs.append(qp)
        wait_for("queue-proxy :8012", lambda: get(8012, headers=KUBELET_QP_PROBE)[0] == 200, proc=qp)
        print(f"  ready (kubelet probe 200) {1000 * (time.monotonic() - t0):.0f} ms after exec")
        check_confinement(qp, qp_root)
        qp_idle_rss = qp.rss_mib()

        status, _, body = get(8012, headers={"Host": "hello.default.example.com"})
        check(status == 200 and body == b"hello from the app\n", f"a request through :8012 reaches the app ({status})")
        status, _, body = get(8012, headers=KUBELET_QP_PROBE)
        check(status == 200, f"kubelet readiness probe (K-Network-Probe: queue) answers 200 {body!r}")
        status, hdrs, body = get(9090, "/metrics", AUTOSCALER_SCRAPE)
        check(
            status == 200 and hdrs.get("Content-Type") == "application/protobuf",
            f":9090/metrics answers 200 application/protobuf ({status} {hdrs.get('Content-Type')})",
        )
        check(decode_stat(body).get(1) == QP_POD, f"the Stat's pod_name is SERVING_POD ({decode_stat(body)})")
        stat = wait_for(
            "a stat window with the request",
            lambda: (s := decode_stat(get(9090, "/metrics", AUTOSCALER_SCRAPE)[2])).get(4) and s,
            timeout=5,
        )
        check(stat.get(4, 0) >= 1, f"the scrape counts the request (request_count {stat.get(4)})")
        status, _, _ = get(8022, "/not-a-path")
        check(status == 404, f"admin port :8022 is up ({status} for an unknown path)")

        print("== activator: its Deployment env + ACTIVATOR_STATIC_SOURCE, ports 18012/18013, same jail")
        t0 = time.monotonic()
        act = Jailed("activator", act_root, ACTIVATOR_ENV, ACTIVATOR_POD, workdir)
        procs.append(act)
        wait_for(
            "the activator's kubelet probe to turn 200 (websocket to the autoscaler up)",
            lambda: get(ACTIVATOR_HTTP_PORT, headers=KUBELET_ACTIVATOR_PROBE)[0] == 200,
            proc=act,
        )
        print(f"  ready (kubelet probe 200) {1000 * (time.monotonic() - t0):.0f} ms after exec")
        check_confinement(act, act_root)
        act_idle_rss = act.rss_mib()
        check(
            (AUTOSCALER_NAME, 1) in dns.asked and autoscaler.connections >= 1,
            f"it resolved {AUTOSCALER_NAME} through the cluster DNS in resolv.conf and connected "
            f"({len(dns.asked)} DNS queries)",
        )
        status, _, body = get(ACTIVATOR_HTTP_PORT, headers={"Host": "hello.default.example.com", **VIA_ACTIVATOR})
        check(status == 200 and body == b"hello from the app\n", f"activator -> queue-proxy -> app ({status})")
        status, _, body = get(ACTIVATOR_H2C_PORT, headers={"Host": "hello.default.example.com", **VIA_ACTIVATOR})
        check(status == 200, f"the same through the h2c port :{ACTIVATOR_H2C_PORT} over HTTP/1.1 ({status})")
        wait_for("stats from the activator", lambda: autoscaler.frames >= 1, timeout=5, proc=act)
        check(autoscaler.frames >= 1, f"the autoscaler got the activator's stats ({autoscaler.frames} frames)")
        stat = wait_for(
            "a proxied request in the queue-proxy's stat",
            lambda: (s := decode_stat(get(9090, "/metrics", AUTOSCALER_SCRAPE)[2])).get(5) and s,
            timeout=5,
        )
        check(stat.get(5, 0) >= 1, f"the queue-proxy counts it as proxied (proxied_request_count {stat.get(5)})")

        # A short burst on keep-alive connections, for the figures below.
        burst = 1000
        t_burst = time.monotonic()
        qp_cpu0, act_cpu0 = qp.cpu_s(), act.cpu_s()
        for port, headers in ((8012, {}), (ACTIVATOR_HTTP_PORT, VIA_ACTIVATOR)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(burst):
                conn.request("GET", "/", headers={"Host": "hello.default.example.com", **headers})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise SmokeFailure(f"burst through :{port}: {resp.status}")
            conn.close()
        print(
            f"  figures: queue-proxy VmRSS {qp_idle_rss:.1f} MiB idle, {qp.rss_mib():.1f} MiB after "
            f"{2 * burst} requests, {qp.cpu_s() - qp_cpu0:.2f} CPU-s for them; activator VmRSS "
            f"{act_idle_rss:.1f} MiB idle, {act.rss_mib():.1f} MiB after {burst}, "
            f"{act.cpu_s() - act_cpu0:.2f} CPU-s ({time.monotonic() - t_burst:.1f} s)"
        )

        if footprint:
            measure_footprint(qp, act)

        print("== SIGTERM to both: the drains")
        for p in procs:
            p.proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        time.sleep(0.2)
        status, _, body = get(8012, headers=KUBELET_QP_PROBE)
        check(status == 503, f"queue-proxy: the kubelet probe fails at once ({status} {body!r})")
        status, _, body = get(ACTIVATOR_HTTP_PORT, headers=KUBELET_ACTIVATOR_PROBE)
        check(status == 500, f"activator: the kubelet probe fails at once ({status} {body!r})")
        status, _, body = get(ACTIVATOR_HTTP_PORT, headers={"Host": "hello.default.example.com", **VIA_ACTIVATOR})
        check(status == 200, f"requests are still served while both drain ({status})")
        t_last = time.monotonic()
        for p, quiet, since in ((qp, QP_DRAIN_S, t_last), (act, ACTIVATOR_DRAIN_S, t_term)):
            try:
                code = p.proc.wait(timeout=quiet + 20)
            except subprocess.TimeoutExpired:
                raise SmokeFailure(f"{p.name} still running {quiet + 20} s after SIGTERM") from None
            took = time.monotonic() - since
            check(code == 0, f"{p.name} exits 0 after its drain ({code}, {took:.1f} s)")
            check(took >= quiet - 1, f"{p.name} kept serving for its {quiet} s drain ({took:.1f} s)")
        print(f"smoke: {len(procs)} binaries passed")
    except SmokeFailure:
        for p in procs:
            print(f"--- {p.name} log (last lines)\n{p.tail()}", file=sys.stderr)
        raise
    finally:
        for p in procs:
            p.stop()
        app.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "jail":
        jail_exec(sys.argv[2], sys.argv[3], sys.argv[4])
        return 1  # not reached: execve replaced us
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path, default=REPO / "target/x86_64-unknown-linux-gnu/dist")
    parser.add_argument("--footprint", action="store_true", help="also measure RSS/CPU under wrk load")
    args = parser.parse_args()
    # Stopped from outside (CI after another step failed): unwind, so the
    # finally blocks stop the binaries and free the ports.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        smoke(args.bin_dir, args.footprint)
    except SmokeFailure as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
