//! The real binary, as the kubelet runs it: environment in, exit code and stderr out.
//!
//! Each child gets `env_clear()` plus an explicit environment; the test process's own
//! environment is never touched.

use std::ffi::OsString;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStringExt;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use queue_proxy::config::test_env;

const BIN: &str = env!("CARGO_BIN_EXE_queue-proxy");

fn queue_proxy() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    cmd
}

fn run_with(env: impl IntoIterator<Item = (String, String)>, args: &[&str]) -> Output {
    queue_proxy().envs(env).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn help_lists_the_environment() {
    let out = queue_proxy().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "CONTAINER_CONCURRENCY",
        "USER_PORT",
        "SERVING_READINESS_PROBE",
        "QUEUE_SERVING_TLS_PORT",
    ] {
        assert!(help.contains(var), "{var} missing from\n{help}");
    }
    let (_, extensions) = help
        .split_once("Extensions")
        .expect("an extensions section");
    for var in [
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
        "QUEUE_PROXY_WORKER_THREADS",
    ] {
        assert!(extensions.contains(var), "{var} missing from\n{help}");
    }
    assert!(help.contains("CONTAINER_CONCURRENCY  (int, required)"));
}

#[test]
fn short_help_too() {
    let out = queue_proxy().arg("-h").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("USER_PORT"));
}

#[test]
fn version() {
    for flag in ["--version", "-V"] {
        let out = queue_proxy().arg(flag).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("queue-proxy {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn no_environment_names_a_required_var() {
    let out = queue_proxy().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "queue-proxy: required key CONTAINER_CONCURRENCY missing value\n"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_container_concurrency() {
    let mut env = test_env(8080);
    env.remove("CONTAINER_CONCURRENCY");
    let out = run_with(env, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "queue-proxy: required key CONTAINER_CONCURRENCY missing value\n"
    );
}

#[test]
fn malformed_container_concurrency() {
    let mut env = test_env(8080);
    env.insert("CONTAINER_CONCURRENCY".into(), "abc".into());
    let out = run_with(env, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "queue-proxy: assigning CONTAINER_CONCURRENCY: converting \"abc\" to type int: invalid syntax\n"
    );
}

#[test]
fn malformed_user_port() {
    let mut env = test_env(8080);
    env.insert("USER_PORT".into(), "notaport".into());
    let out = run_with(env, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("queue-proxy: assigning USER_PORT: "),
        "{err}"
    );
}

#[test]
fn unknown_args_do_not_hide_config_errors() {
    let mut env = test_env(8080);
    env.remove("SERVING_POD");
    let out = run_with(env, &["--foo", "bar", "-x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "queue-proxy: required key SERVING_POD missing value\n"
    );
}

#[test]
fn non_utf8_value_is_named() {
    let out = queue_proxy()
        .envs(test_env(8080))
        .env(
            "CONTAINER_CONCURRENCY",
            OsString::from_vec(vec![b'1', 0xff]),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "queue-proxy: assigning CONTAINER_CONCURRENCY: value is not valid UTF-8\n"
    );
}

#[test]
fn port_in_use_exits_1() {
    // Held for the whole run, on every IPv4 address, so the proxy's bind must fail.
    let blocker = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let mut env = test_env(free_port());
    env.insert("QUEUE_SERVING_PORT".into(), port.to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
    let out = run_with(env, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("queue-proxy: "), "{err}");
    assert!(last.contains(&port.to_string()), "{err}");
    drop(blocker);
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `env` and `args`, waits until its main port accepts,
/// kills it, and returns its stdout and stderr.
fn run_until_listening(
    mut env: std::collections::HashMap<String, String>,
    args: &[&str],
) -> (String, String) {
    let main_port = free_port();
    env.insert("QUEUE_SERVING_PORT".into(), main_port.to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_WORKER_THREADS".into(), "1".into());
    let mut child = Running(
        queue_proxy()
            .envs(env)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    let mut accepted = false;
    for _ in 0..200 {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("exited early with {status}: {err}");
        }
        if TcpStream::connect(("127.0.0.1", main_port)).is_ok() {
            accepted = true;
            break;
        }
        sleep(Duration::from_millis(50));
    }
    assert!(accepted, "main port {main_port} never accepted");

    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err)
}

#[test]
fn starts_with_unknown_args_and_logs_to_stderr() {
    let (out, err) = run_until_listening(test_env(free_port()), &["--foo", "bar"]);
    let logs: Vec<&str> = err.lines().collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("ignoring command-line arguments") && l.contains("--foo")),
        "{err}"
    );
    let sizing = logs
        .iter()
        .find(|l| l.contains("sizing runtime"))
        .unwrap_or_else(|| panic!("no sizing line in\n{err}"));
    assert!(sizing.contains("\"worker_threads\":1"), "{sizing}");
    assert!(
        sizing.starts_with('{') && sizing.ends_with('}'),
        "process logs are JSON lines: {sizing}"
    );
    // stdout belongs to the request log.
    assert!(!out.contains("sizing runtime"), "{out}");
}

/// Knative's default config-logging zap config.
const ZAP_CONFIG: &str = r#"{"level": "info", "development": false, "outputPaths": ["stdout"],
  "errorOutputPaths": ["stderr"], "encoding": "json", "encoderConfig": {"timeKey": "timestamp",
  "levelKey": "severity", "nameKey": "logger", "callerKey": "caller", "messageKey": "message",
  "stacktraceKey": "stacktrace", "lineEnding": "", "levelEncoder": "", "timeEncoder": "iso8601",
  "durationEncoder": "", "callerEncoder": ""}}"#;

// Process logs (spec §9): every line is zap-shaped JSON with the revision key
// and the pod; the level comes from SERVING_LOGGING_LEVEL, else from the config.
#[test]
fn process_logs_carry_revision_key_and_pod() {
    let mut env = test_env(free_port());
    env.insert("SERVING_LOGGING_CONFIG".into(), ZAP_CONFIG.into());
    env.insert("SERVING_LOGGING_LEVEL".into(), "".into());
    env.insert("SERVING_NAMESPACE".into(), "team-a".into());
    env.insert("SERVING_REVISION".into(), "hello-00001".into());
    env.insert("SERVING_POD".into(), "hello-00001-deployment-abc".into());
    let (_, err) = run_until_listening(env.clone(), &[]);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "no logs");
    for line in &lines {
        assert_eq!(line["knative.dev/key"], "team-a/hello-00001", "{line}");
        assert_eq!(
            line["knative.dev/pod"], "hello-00001-deployment-abc",
            "{line}"
        );
        assert_eq!(line["logger"], "queueproxy", "{line}");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert_ne!(line["severity"], "debug", "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "queue-proxy listening"),
        "{err}"
    );

    // The variable wins over the config's level: debug lines appear.
    env.insert("SERVING_LOGGING_LEVEL".into(), "debug".into());
    let (_, err) = run_until_listening(env.clone(), &[]);
    let severities: Vec<String> = err
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["severity"].to_string())
        .collect();
    assert!(severities.iter().any(|s| s == "\"debug\""), "{err}");

    // Errors only: the info lines are gone.
    env.insert("SERVING_LOGGING_LEVEL".into(), "error".into());
    let (_, err) = run_until_listening(env, &[]);
    assert!(!err.contains("queue-proxy listening"), "{err}");
}

/// Upstream's env for an app on `app_port`, serving on `main_port`, with free
/// admin and metrics ports.
fn env_on_free_ports(app_port: u16, main_port: u16) -> std::collections::HashMap<String, String> {
    let mut env = test_env(app_port);
    env.insert("QUEUE_SERVING_PORT".into(), main_port.to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
    env
}

/// A connection to `port` once the binary listens there (up to 10 s).
fn connect_when_listening(port: u16) -> TcpStream {
    for _ in 0..200 {
        if let Ok(conn) = TcpStream::connect(("127.0.0.1", port)) {
            return conn;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("main port {port} never accepted");
}

/// Sends `signal` (e.g. "TERM") to `child` through the system `kill`, so the test needs no
/// unsafe FFI.
fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {}", child.id()))
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// First SIGTERM starts a graceful shutdown, which waits for in-flight requests; a second
/// one exits 1 at once (spec §7).
#[test]
fn second_signal_exits_1_immediately() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;

    // A user container that accepts and never answers, so a request stays in flight.
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app.local_addr().unwrap().port();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in app.incoming() {
            held.push(conn);
            let _ = accepted_tx.send(());
        }
    });

    let main_port = free_port();
    let env = env_on_free_ports(app_port, main_port);
    let mut child = Running(
        queue_proxy()
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (log_tx, log_rx) = mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(line);
        }
    });
    let wait_for_log = |needle: &str| loop {
        match log_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => {}
            Err(err) => panic!("no log line containing {needle:?}: {err}"),
        }
    };

    wait_for_log("sizing runtime");
    let mut client = connect_when_listening(main_port);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    accepted_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("request never reached the user container");

    send_signal(&child.0, "TERM");
    // Signals that arrive together may be delivered as one; wait until the first is seen.
    wait_for_log("received signal");
    sleep(Duration::from_millis(200));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "exited after one SIGTERM with a request in flight"
    );

    send_signal(&child.0, "TERM");
    for _ in 0..200 {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1), "{status}");
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("still running 10s after the second SIGTERM");
}

#[test]
fn invalid_readiness_probe_json_exits_1_naming_it() {
    for (probe, multi) in [("{not json", "false"), (r#"{"tcpSocket":{}}"#, "true")] {
        let mut env = test_env(free_port());
        env.insert("SERVING_READINESS_PROBE".into(), probe.into());
        env.insert("ENABLE_MULTI_CONTAINER_PROBES".into(), multi.into());
        env.insert("QUEUE_SERVING_PORT".into(), free_port().to_string());
        env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
        env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
        let out = run_with(env, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("queue-proxy: SERVING_READINESS_PROBE: "),
            "{probe}: {err}"
        );
    }
}

/// `tracing.protocol: stdout` (spec §9): the spans of a request are printed as
/// JSON lines on stdout by the time the binary has drained and exited.
#[test]
fn stdout_tracing_prints_spans_at_exit() {
    use std::io::{BufRead, BufReader, Write};

    // A user container answering every request `200 ok`.
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    let app_port = app.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in app.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                    line.clear();
                }
            });
        }
    });

    let main_port = free_port();
    let mut env = env_on_free_ports(app_port, main_port);
    env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
    env.insert(
        "OBSERVABILITY_CONFIG".into(),
        r#"{"tracing":{"protocol":"stdout"}}"#.into(),
    );
    let mut child = Running(
        queue_proxy()
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut client = connect_when_listening(main_port);
    client
        .write_all(b"POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    send_signal(&child.0, "TERM");
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let spans: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["HTTP POST", "kn.queueproxy.proxy", "POST"], "{out}");
    let server = &spans[2];
    assert_eq!(server["SpanKind"], 2);
    assert_eq!(
        spans[1]["Parent"]["SpanID"],
        server["SpanContext"]["SpanID"]
    );
    assert_eq!(
        spans[0]["Parent"]["SpanID"],
        spans[1]["SpanContext"]["SpanID"]
    );
}
