//! The real `queue-proxy` binary on free loopback ports, and what the hostile
//! tests check after every attack: still healthy, concurrency back to 0, and
//! no file descriptor left open.

use super::{get, scrape, within};
use http::StatusCode;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One open file descriptor of the process.
struct Fd {
    number: String,
    /// What `/proc/<pid>/fd/<n>` links to.
    target: String,
    /// Local address, remote address and state, for a TCP socket (hex, as
    /// `/proc/net/tcp` writes them).
    socket: Option<(String, String, String)>,
    remote_port: Option<u16>,
}

/// A running `queue-proxy` process, killed on drop.
pub struct Binary {
    child: Child,
    app_port: u16,
    pub main: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Starts the binary in front of `app_port` with upstream's default env,
    /// `overrides` applied, and waits until the main port accepts.
    pub async fn start(app_port: u16, overrides: &[(&str, &str)]) -> Binary {
        let (main, admin, metrics) = (free_port(), free_port(), free_port());
        let mut env = queue_proxy::config::test_env(app_port);
        env.insert("QUEUE_SERVING_PORT".into(), main.to_string());
        env.insert("QUEUE_PROXY_ADMIN_PORT".into(), admin.to_string());
        env.insert("QUEUE_PROXY_METRICS_PORT".into(), metrics.to_string());
        env.insert("QUEUE_PROXY_CERTS_DIR".into(), "/nonexistent".into());
        env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
        for (k, v) in overrides {
            env.insert((*k).into(), (*v).into());
        }
        let child = Command::new(env!("CARGO_BIN_EXE_queue-proxy"))
            .env_clear()
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let binary = Binary {
            child,
            app_port,
            main: local(main),
            admin: local(admin),
            metrics: local(metrics),
        };
        within(10, async {
            for addr in [binary.main, binary.metrics] {
                while tokio::net::TcpStream::connect(addr).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .await;
        binary
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `secs` for the process to exit by itself.
    pub async fn exited_within(&mut self, secs: u64) -> std::process::ExitStatus {
        within(secs, async {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// How many file descriptors the process has open, not counting its
    /// connections to the app: idle ones are kept in the pool for reuse (a
    /// connect that finishes after its request was cancelled lands there too),
    /// and requests still open at the app show up in the app's own counts.
    pub fn open_fds(&self) -> usize {
        self.fds()
            .iter()
            .filter(|fd| fd.remote_port != Some(self.app_port))
            .count()
    }

    fn fds(&self) -> Vec<Fd> {
        let tcp: String = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        let dir = format!("/proc/{}/fd", self.child.id());
        let entries = std::fs::read_dir(dir).expect("the queue-proxy is running");
        entries
            .flatten()
            .map(|entry| {
                let target = std::fs::read_link(entry.path()).unwrap_or_default();
                let target = target.to_string_lossy().into_owned();
                // /proc/net/tcp columns: sl local remote st ... inode (10th).
                let socket = target
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .and_then(|inode| {
                        tcp.lines().find_map(|line| {
                            let cols: Vec<&str> = line.split_whitespace().collect();
                            (cols.get(9) == Some(&inode)).then(|| {
                                (cols[1].to_owned(), cols[2].to_owned(), cols[3].to_owned())
                            })
                        })
                    });
                let remote_port = socket.as_ref().and_then(|(_, remote, _)| {
                    let port = remote.rsplit_once(':')?.1;
                    u16::from_str_radix(port, 16).ok()
                });
                Fd {
                    number: entry.file_name().to_string_lossy().into_owned(),
                    target,
                    socket,
                    remote_port,
                }
            })
            .collect()
    }

    /// Each open fd, sockets with their TCP endpoints (for a leak's message).
    pub fn describe_fds(&self) -> String {
        self.fds()
            .iter()
            .map(|fd| match &fd.socket {
                Some((local, remote, state)) => format!(
                    "  {} {} {local} -> {remote} state {state}\n",
                    fd.number, fd.target
                ),
                None => format!("  {} {}\n", fd.number, fd.target),
            })
            .collect()
    }

    /// A request through the proxy works, then a baseline of open fds is taken
    /// (the app answers `Connection: close`, so no pooled app connection counts).
    pub async fn baseline(&self) -> usize {
        self.assert_serves().await;
        settle_fds(self, usize::MAX).await
    }

    /// The proxy still proxies, and answers kubelet's readiness probe.
    pub async fn assert_serves(&self) {
        let got = within(10, get(self.main, "/", &[])).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        let probe = within(
            10,
            get(
                self.main,
                "/",
                &[
                    ("user-agent", "kube-probe/1.30"),
                    ("k-network-probe", "queue"),
                ],
            ),
        )
        .await;
        assert_eq!(probe.status, StatusCode::OK, "{}", probe.text());
    }

    /// After an attack: still serving, the autoscaler sees no request in flight,
    /// and the fds are back to `baseline`.
    pub async fn assert_recovered(&self, baseline: usize) {
        self.assert_serves().await;
        self.assert_idle().await;
        self.assert_fds_back_to(baseline).await;
    }

    /// Waits (up to 10 s: sockets close asynchronously) for the open fds to
    /// drop to `baseline`, and lists them if they do not.
    pub async fn assert_fds_back_to(&self, baseline: usize) {
        let now = settle_fds(self, baseline).await;
        assert!(
            now <= baseline,
            "fds leaked: {baseline} before, {now} after:\n{}",
            self.describe_fds()
        );
    }

    /// Waits until the autoscaler stats read no request in flight.
    pub async fn assert_idle(&self) {
        within(15, async {
            loop {
                let (_, stat) = scrape(self.metrics).await;
                if stat.average_concurrent_requests == 0.0 && stat.process_uptime > 0.0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
}

/// Waits (up to 10 s) for the fd count to drop to `target` (closing sockets
/// takes a moment), then returns the count.
async fn settle_fds(binary: &Binary, target: usize) -> usize {
    let mut last = binary.open_fds();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = binary.open_fds();
        if now <= target && now == last {
            return now;
        }
        last = now;
    }
    last
}
