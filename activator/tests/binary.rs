//! The `activator` binary itself: its exit on bad configuration, and the
//! request log it writes to stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_activator");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pod stand-in on a thread: answers the activator's probe with `queue` and
/// everything else with `hello`, one request per connection.
fn fake_pod() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let body = if head.contains("user-agent: knative-activator-probe") {
                    "queue"
                } else {
                    "hello"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

struct Activator {
    child: Child,
    /// stdout, line by line.
    lines: mpsc::Receiver<String>,
    /// stderr (the process logs), line by line.
    logs: mpsc::Receiver<String>,
    port: u16,
}

impl Activator {
    fn start(dir: &std::path::Path, revisions: &str, extra: &[(&str, &str)]) -> Activator {
        let source = dir.join("revisions.json");
        std::fs::write(&source, revisions).unwrap();
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("POD_NAME", "activator-test")
            .env("POD_IP", "127.0.0.1")
            .env("SYSTEM_NAMESPACE", "knative-serving")
            .env("ACTIVATOR_HTTP_PORT", port.to_string())
            .env("ACTIVATOR_H2C_PORT", "0")
            .env("ACTIVATOR_STATIC_SOURCE", &source)
            .env("ACTIVATOR_DRAIN_TIMEOUT_MS", "0")
            .env(
                "ACTIVATOR_AUTOSCALER_URL",
                format!("ws://127.0.0.1:{}", free_port()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = line_reader(child.stdout.take().unwrap());
        let logs = line_reader(child.stderr.take().unwrap());
        Activator {
            child,
            lines,
            logs,
            port,
        }
    }

    /// One request, retried until the port is open and the answer is 200.
    fn get_until_ok(&self, headers: &str) -> String {
        for _ in 0..200 {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let _ = write!(
                    stream,
                    "GET /some/path?q=1 HTTP/1.1\r\nhost: example.com\r\n{headers}connection: close\r\n\r\n"
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return answer;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the activator never answered 200");
    }
}

fn line_reader(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lines
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_missing_required_variable_exits_1_naming_it() {
    let out = Command::new(BIN)
        .env_clear()
        .env("POD_NAME", "a")
        .env("SYSTEM_NAMESPACE", "knative-serving")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("POD_IP"), "{stderr}");
}

// Spec §8.2: one stdout line per request, rendered with the request's revision;
// the activator knows no pod, so PodName and PodIP are empty.
#[test]
fn the_request_log_names_the_requests_revision() {
    let dir = std::env::temp_dir().join(format!("activator-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pod = fake_pod();
    let revisions = format!(
        r#"{{"revisions": [{{"namespace": "ns", "name": "rev-1", "service": "svc",
            "configuration": "cfg", "containerConcurrency": 10, "ready": ["{pod}"]}}]}}"#
    );
    let template = "{{.Request.Method}} {{.Request.RequestURI}} {{.Response.Code}} \
                    {{.Revision.Namespace}}/{{.Revision.Name}} {{.Revision.Service}} \
                    {{.Revision.Configuration}} [{{.Revision.PodName}}{{.Revision.PodIP}}]";
    let activator = Activator::start(
        &dir,
        &revisions,
        &[("ACTIVATOR_REQUEST_LOG_TEMPLATE", template)],
    );
    let answer = activator
        .get_until_ok("knative-serving-namespace: ns\r\nknative-serving-revision: rev-1\r\n");
    assert!(answer.ends_with("hello"), "{answer}");
    let line = activator
        .lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a request-log line");
    assert_eq!(line, "GET /some/path?q=1 200 ns/rev-1 svc cfg []");
    let _ = std::fs::remove_dir_all(&dir);
}

// Spec §10 check 20 (and §8.3): a proxied request's spans, printed by the
// stdout exporter at exit in order of completion, nest under the server span,
// and carry the caller's trace id.
#[test]
fn a_proxied_request_produces_upstreams_spans_in_order() {
    let dir = std::env::temp_dir().join(format!("activator-spans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pod = fake_pod();
    let revisions = format!(
        r#"{{"revisions": [{{"namespace": "ns", "name": "rev-1", "containerConcurrency": 10,
            "ready": ["{pod}"]}}]}}"#
    );
    let mut activator = Activator::start(
        &dir,
        &revisions,
        &[
            ("ACTIVATOR_TRACING_PROTOCOL", "stdout"),
            ("ACTIVATOR_TRACING_SAMPLING_RATE", "1"),
        ],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    activator.get_until_ok(&format!(
        "knative-serving-namespace: ns\r\nknative-serving-revision: rev-1\r\n\
         traceparent: 00-{trace_id}-00f067aa0ba902b7-01\r\n"
    ));
    let killed = Command::new("kill")
        .args(["-TERM", &activator.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(activator.child.wait().unwrap().code(), Some(0));
    let spans: Vec<serde_json::Value> = activator
        .lines
        .iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["throttler_try", "GET /some/path", "activator_proxy", "GET"],
        "{spans:#?}"
    );
    let id = |i: usize| spans[i]["SpanContext"]["SpanID"].as_str().unwrap();
    let parent = |i: usize| spans[i]["Parent"]["SpanID"].as_str().unwrap();
    assert_eq!(
        parent(3),
        "00f067aa0ba902b7",
        "the server span continues the caller's"
    );
    assert_eq!(parent(0), id(3));
    assert_eq!(parent(2), id(3));
    assert_eq!(parent(1), id(2));
    for span in &spans {
        assert_eq!(span["SpanContext"]["TraceID"], trace_id);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// Spec §8.4: zap-shaped JSON process logs with the activator's fields.
#[test]
fn process_logs_carry_the_pod_and_controller() {
    let dir = std::env::temp_dir().join(format!("activator-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pod = fake_pod();
    let revisions =
        format!(r#"{{"revisions": [{{"namespace": "ns", "name": "rev-1", "ready": ["{pod}"]}}]}}"#);
    let activator = Activator::start(&dir, &revisions, &[("SERVING_LOGGING_LEVEL", "info")]);
    activator.get_until_ok("knative-serving-namespace: ns\r\nknative-serving-revision: rev-1\r\n");
    let line = activator
        .logs
        .recv_timeout(Duration::from_secs(10))
        .expect("a log line");
    let log: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(log["knative.dev/pod"], "activator-test", "{line}");
    assert_eq!(log["knative.dev/controller"], "activator", "{line}");
    assert_eq!(log["logger"], "activator", "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

// A request whose client leaves while it is held still gets its request-log
// line (code 200, as upstream logs a canceled request), however it was held.
#[test]
fn a_held_request_whose_client_leaves_is_logged() {
    let dir = std::env::temp_dir().join(format!("activator-abandoned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let revisions =
        r#"{"revisions": [{"namespace": "ns", "name": "cold", "containerConcurrency": 1}]}"#;
    let template = "{{.Request.Method}} {{.Request.RequestURI}} {{.Response.Code}} \
                    {{.Request.ContentLength}} {{.Revision.Namespace}}/{{.Revision.Name}}";
    let activator = Activator::start(
        &dir,
        revisions,
        &[("ACTIVATOR_REQUEST_LOG_TEMPLATE", template)],
    );
    // Once the port answers (a probe is not logged).
    activator.get_until_ok("k-network-probe: activator\r\n");
    let held = "host: example.com\r\nknative-serving-namespace: ns\r\n\
                knative-serving-revision: cold\r\n";
    // First on its connection (the early hold), then after a probe on a
    // kept-alive connection (the handler).
    for (path, probe_first) in [("/first", false), ("/kept-alive", true)] {
        let mut stream = TcpStream::connect(("127.0.0.1", activator.port)).unwrap();
        if probe_first {
            write!(
                stream,
                "GET / HTTP/1.1\r\nhost: a\r\nk-network-probe: activator\r\n\r\n"
            )
            .unwrap();
            let mut answer = [0u8; 512];
            let n = stream.read(&mut answer).unwrap();
            assert!(
                answer[..n].ends_with(b"activator"),
                "{:?}",
                String::from_utf8_lossy(&answer[..n])
            );
        }
        write!(
            stream,
            "POST {path} HTTP/1.1\r\n{held}content-length: 0\r\n\r\n"
        )
        .unwrap();
        // Let it be held, then leave.
        std::thread::sleep(Duration::from_millis(100));
        drop(stream);
        let line = activator
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a request-log line");
        assert_eq!(line, format!("POST {path} 200 0 ns/cold"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
