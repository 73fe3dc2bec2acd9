//! Sizing the tokio runtime from the cgroup CPU quota.
//!
//! Upstream's Go binary gets this from uber-go/automaxprocs: GOMAXPROCS follows the
//! container's CPU *limit*. The reconciler gives queue-proxy a 25m CPU *request* and, by
//! default, no limit; a runtime sized from the node's core count would then start one
//! worker per node core for a sidecar that is meant to use a fortieth of one, each with its
//! own stack and run queue. So: the override (`QUEUE_PROXY_WORKER_THREADS`) if set, else the
//! quota, else a small fixed default.
//!
//! Differences from automaxprocs, on purpose: a fractional quota rounds *up* (1.5 cores →
//! 2 workers; automaxprocs floors to 1, which leaves half the quota unused by a proxy that
//! is mostly I/O), and we read the cgroup files at a fixed root instead of resolving
//! `/proc/self/cgroup` against `/proc/self/mountinfo`, because in a container (cgroup
//! namespace on v2, Docker/containerd mounts on v1) the root *is* the container's cgroup.

use std::fs;
use std::path::Path;

/// Workers when there is no quota (upstream's default pod: a 25m request, no limit):
/// one current-thread runtime. Measured side by side on 2 cores against nginx
/// (benches/README.md), one worker gave 1.3× the throughput of two at c50 for
/// 0.67× the CPU per request and a lower p99: the proxy's work per request is
/// short, and handing it between threads costs more than it gains.
pub const DEFAULT_WORKERS: usize = 1;

/// The CPU quota of the cgroup mounted at `cgroup_root` (normally `/sys/fs/cgroup`), in
/// cores, or `None` when unlimited or unknown.
///
/// cgroup v2: `cpu.max` is `"<quota> <period>"` or `"max <period>"`. cgroup v1:
/// `cpu.cfs_quota_us` (-1 = unlimited) and `cpu.cfs_period_us` under `cpu/` or
/// `cpu,cpuacct/`. If `cpu.max` exists it is authoritative, even when it says unlimited.
pub fn cpu_quota_cores(cgroup_root: &Path) -> Option<f64> {
    if let Ok(max) = fs::read_to_string(cgroup_root.join("cpu.max")) {
        return parse_cpu_max(&max);
    }
    ["cpu", "cpu,cpuacct"].iter().find_map(|controller| {
        let dir = cgroup_root.join(controller);
        let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
        let period = fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
        ratio(quota.trim(), period.trim())
    })
}

fn parse_cpu_max(contents: &str) -> Option<f64> {
    let mut fields = contents.split_whitespace();
    let quota = fields.next()?;
    // The period may be omitted when written; the kernel default is 100ms.
    let period = fields.next().unwrap_or("100000");
    if quota == "max" {
        return None;
    }
    ratio(quota, period)
}

/// quota / period, when both are positive integers (v1 writes -1 for "no quota").
fn ratio(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.parse().ok()?;
    let period: i64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// How many worker threads to run.
///
/// `override_` wins. Otherwise the quota rounded up (at least 1), or [`DEFAULT_WORKERS`]
/// without one, both capped at `available` (the cores the OS lets us run on).
pub fn worker_threads(quota: Option<f64>, override_: Option<usize>, available: usize) -> usize {
    if let Some(n) = override_ {
        return n.max(1);
    }
    let wanted = match quota {
        // `as` saturates; a quota beyond usize::MAX cores is capped below anyway.
        Some(cores) => cores.ceil() as usize,
        None => DEFAULT_WORKERS,
    };
    wanted.min(available).max(1)
}

/// A runtime with `threads` workers: single-threaded for 1, which skips the work-stealing
/// machinery a one-core sidecar cannot use.
pub fn build(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .thread_name("queue-proxy-worker")
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory standing in for `/sys/fs/cgroup`, removed on drop.
    struct FakeCgroup(PathBuf);

    impl FakeCgroup {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "queue-proxy-cgroup-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, rel: &str, contents: &str) -> &Self {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
            self
        }

        fn quota(&self) -> Option<f64> {
            cpu_quota_cores(&self.0)
        }
    }

    impl Drop for FakeCgroup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn v2_cpu_max() {
        let cg = FakeCgroup::new();
        assert_eq!(cg.write("cpu.max", "150000 100000\n").quota(), Some(1.5));
        assert_eq!(cg.write("cpu.max", "2500 100000\n").quota(), Some(0.025));
        assert_eq!(cg.write("cpu.max", "400000 100000\n").quota(), Some(4.0));
        assert_eq!(cg.write("cpu.max", "50000\n").quota(), Some(0.5));
        assert_eq!(cg.write("cpu.max", "max 100000\n").quota(), None);
        assert_eq!(cg.write("cpu.max", "max\n").quota(), None);
        assert_eq!(cg.write("cpu.max", "").quota(), None);
        assert_eq!(cg.write("cpu.max", "junk 100000").quota(), None);
        assert_eq!(cg.write("cpu.max", "100000 0").quota(), None);
    }

    #[test]
    fn v2_wins_over_v1_even_when_unlimited() {
        let cg = FakeCgroup::new();
        cg.write("cpu/cpu.cfs_quota_us", "200000\n")
            .write("cpu/cpu.cfs_period_us", "100000\n")
            .write("cpu.max", "max 100000\n");
        assert_eq!(cg.quota(), None);
    }

    #[test]
    fn v1_cfs_quota() {
        let cg = FakeCgroup::new();
        cg.write("cpu/cpu.cfs_quota_us", "250000\n")
            .write("cpu/cpu.cfs_period_us", "100000\n");
        assert_eq!(cg.quota(), Some(2.5));
        cg.write("cpu/cpu.cfs_quota_us", "-1\n");
        assert_eq!(cg.quota(), None);
    }

    #[test]
    fn v1_combined_controller_dir() {
        let cg = FakeCgroup::new();
        cg.write("cpu,cpuacct/cpu.cfs_quota_us", "50000\n")
            .write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        assert_eq!(cg.quota(), Some(0.5));
    }

    #[test]
    fn v1_needs_both_files() {
        let cg = FakeCgroup::new();
        cg.write("cpu/cpu.cfs_quota_us", "50000\n");
        assert_eq!(cg.quota(), None);
    }

    #[test]
    fn no_cgroup_files() {
        let cg = FakeCgroup::new();
        assert_eq!(cg.quota(), None);
        assert_eq!(cpu_quota_cores(&cg.0.join("does-not-exist")), None);
    }

    #[test]
    fn sizing() {
        // The override wins over quota and available cores.
        assert_eq!(worker_threads(Some(0.025), Some(8), 4), 8);
        assert_eq!(worker_threads(None, Some(3), 1), 3);
        // Quota rounds up, at least 1, at most what is available.
        assert_eq!(worker_threads(Some(0.025), None, 64), 1);
        assert_eq!(worker_threads(Some(1.0), None, 64), 1);
        assert_eq!(worker_threads(Some(1.5), None, 64), 2);
        assert_eq!(worker_threads(Some(4.0), None, 64), 4);
        assert_eq!(worker_threads(Some(16.0), None, 4), 4);
        // No quota: the small default, never more than available.
        assert_eq!(worker_threads(None, None, 64), DEFAULT_WORKERS);
        assert_eq!(worker_threads(None, None, 1), 1);
        // A zero from the caller (no parallelism info) still yields a runnable runtime.
        assert_eq!(worker_threads(None, None, 0), 1);
    }

    #[test]
    fn one_thread_is_current_thread() {
        let rt = build(1).unwrap();
        let flavor = rt.block_on(async {
            // Timers and IO must be enabled.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            tokio::runtime::Handle::current().runtime_flavor()
        });
        assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
    }

    #[test]
    fn several_threads_are_named_workers() {
        let rt = build(3).unwrap();
        assert_eq!(rt.metrics().num_workers(), 3);
        let (flavor, name) = rt.block_on(async {
            let name = tokio::spawn(async {
                let _ = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
            (tokio::runtime::Handle::current().runtime_flavor(), name)
        });
        assert_eq!(flavor, tokio::runtime::RuntimeFlavor::MultiThread);
        assert_eq!(name.as_deref(), Some("queue-proxy-worker"));
    }
}
