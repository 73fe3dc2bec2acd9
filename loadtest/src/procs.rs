//! Child processes for the load runs, and what /proc says about them.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Clock ticks per second of /proc's CPU times (`USER_HZ`, 100 on Linux x86_64).
const CLK_TCK: f64 = 100.0;

/// A child process that is killed when dropped (SIGKILL: the proxies' drain on
/// SIGTERM is not what is measured).
pub struct Child {
    pub name: String,
    inner: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Starts `program` with exactly `env` (plus PATH) if given, output to
    /// `<dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: Option<&HashMap<String, String>>,
        dir: &Path,
    ) -> io::Result<Child> {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(env) = env {
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env);
        }
        let inner = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("starting {}: {e}", program.display()))
        })?;
        Ok(Child {
            name: name.to_owned(),
            inner,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        let start = bytes.len().saturating_sub(2000);
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.inner.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The env of an activator binary serving `http_port` with revisions from the
/// static `source` file; its stats go to a port nothing listens on, as in a
/// benchmark.
pub fn activator_env(
    pod_name: &str,
    http_port: u16,
    source: &Path,
) -> io::Result<HashMap<String, String>> {
    Ok([
        ("POD_NAME", pod_name.to_owned()),
        ("POD_IP", "127.0.0.1".to_owned()),
        ("SYSTEM_NAMESPACE", "knative-serving".to_owned()),
        ("ACTIVATOR_HTTP_PORT", http_port.to_string()),
        ("ACTIVATOR_H2C_PORT", free_port()?.to_string()),
        ("ACTIVATOR_STATIC_SOURCE", source.display().to_string()),
        ("ACTIVATOR_DRAIN_TIMEOUT_MS", "0".to_owned()),
        (
            "ACTIVATOR_AUTOSCALER_URL",
            format!("ws://127.0.0.1:{}", free_port()?),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect())
}

/// utime + stime of a process, all threads, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// A `kB` line of /proc/<pid>/status (`VmRSS`, `RssAnon`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// (busy, total) CPU-seconds of the whole machine since boot, from /proc/stat.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let vals: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = vals.iter().sum();
    let idle = vals.get(3)? + vals.get(4)?;
    Some(((total - idle) / CLK_TCK, total / CLK_TCK))
}

/// CPU-seconds used by this process's finished children (wrk, hey).
pub fn children_cpu_seconds() -> f64 {
    // /proc/self/stat fields 16 and 17: cutime and cstime.
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
            Some((f.get(13)?.parse::<f64>().ok()? + f.get(14)?.parse::<f64>().ok()?) / CLK_TCK)
        })
        .unwrap_or(0.0)
}

/// The status of one blocking HTTP/1.1 GET, with `Connection: close`.
pub fn http_status(addr: SocketAddr, headers: &[(String, String)]) -> io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// Waits until `addr` answers 200, or the child dies, or 20 s pass.
pub fn wait_ok(
    child: &mut Child,
    addr: SocketAddr,
    headers: &[(String, String)],
) -> io::Result<()> {
    for _ in 0..200 {
        if child.exited() {
            return Err(io::Error::other(format!(
                "{} exited; its log:\n{}",
                child.name,
                child.log_tail()
            )));
        }
        if matches!(http_status(addr, headers), Ok(200)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(io::Error::other(format!(
        "{} did not answer 200 on {addr}; its log:\n{}",
        child.name,
        child.log_tail()
    )))
}

/// Installs wrk, hey and nginx from Debian if any is missing (as root).
pub fn ensure_tools() -> io::Result<()> {
    let missing: Vec<&str> = ["wrk", "hey", "nginx"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {missing:?} with apt-get (Debian packages wrk, hey, nginx-light)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "wrk", "hey", "nginx-light"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install()?.success() {
        Command::new("apt-get").args(["update", "-qq"]).status()?;
        if !install()?.success() {
            return Err(io::Error::other(
                "apt-get install wrk hey nginx-light failed; install them and rerun",
            ));
        }
    }
    Ok(())
}

/// A program's path on PATH (and nginx's usual /usr/sbin).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// nginx as a backend (`return 200 "ok"`) or a `proxy_pass` with kept-alive
/// upstream connections: one worker, no master, no access log.
pub fn nginx(name: &str, port: u16, proxy_to: Option<u16>, dir: &Path) -> io::Result<Child> {
    let prefix = dir.join(name);
    fs::create_dir_all(&prefix)?;
    let p = prefix.display();
    let server = match proxy_to {
        None => format!(
            "server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 \"ok\"; }} }}"
        ),
        Some(backend) => format!(
            "upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 100000000; keepalive_timeout 300s; }}
    server {{ listen 127.0.0.1:{port} backlog=4096;
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    };
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {p}/nginx.pid; error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {p}/cb; proxy_temp_path {p}/px; fastcgi_temp_path {p}/fc;
    uwsgi_temp_path {p}/uw; scgi_temp_path {p}/sc; keepalive_timeout 300s; keepalive_requests 100000000;
    {server}
}}
"
    );
    let conf_path = prefix.join("nginx.conf");
    fs::write(&conf_path, conf)?;
    let nginx = which("nginx").ok_or_else(|| io::Error::other("nginx not found"))?;
    let (prefix_arg, conf_arg, err_arg) = (
        format!("{p}/"),
        conf_path.display().to_string(),
        format!("{p}/error.log"),
    );
    Child::spawn(
        name,
        &nginx,
        &["-p", &prefix_arg, "-c", &conf_arg, "-e", &err_arg],
        None,
        dir,
    )
}

/// The env a reconciler gives a queue-proxy, for the real binary.
pub fn queue_proxy_env(
    serving_port: u16,
    user_port: u16,
    cc: u32,
) -> io::Result<HashMap<String, String>> {
    let mut env = queue_proxy::config::test_env(user_port);
    env.insert("QUEUE_SERVING_PORT".into(), serving_port.to_string());
    env.insert("CONTAINER_CONCURRENCY".into(), cc.to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port()?.to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port()?.to_string());
    env.insert("QUEUE_SERVING_TLS_PORT".into(), free_port()?.to_string());
    Ok(env)
}
