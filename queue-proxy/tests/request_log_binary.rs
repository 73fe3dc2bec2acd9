//! The request log from the real binary's stdout: spec §12 check 58 end to end,
//! the default template's line, probe lines, and a bad OBSERVABILITY_CONFIG.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running {
    child: Child,
    addr: std::net::SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(app_port: u16, observability: &str) -> Running {
    let main = free_port();
    let mut env = queue_proxy::config::test_env(app_port);
    env.insert("QUEUE_SERVING_PORT".into(), main.to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
    env.insert("OBSERVABILITY_CONFIG".into(), observability.into());
    let mut child = Command::new(env!("CARGO_BIN_EXE_queue-proxy"))
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], main));
    within(10, async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Running { child, addr, lines }
}

fn next_line(lines: &mpsc::Receiver<String>) -> Option<String> {
    lines.recv_timeout(Duration::from_secs(3)).ok()
}

fn config(template: &str, probes: bool) -> String {
    serde_json::json!({
        "tracing": {}, "metrics": {}, "runtime": {}, "requestMetrics": {},
        "enableRequestLog": true,
        "requestLogTemplate": template,
        "enableProbeRequestLog": probes,
    })
    .to_string()
}

// Check 58: `{{.Request.ContentLength}}` with a POST body `test` → `4`; probes
// are not logged unless enabled.
#[tokio::test]
async fn content_length_line_and_probe_lines() {
    let app = start_echo_app().await;
    let qp = start(app.port(), &config("{{.Request.ContentLength}}", false)).await;
    let req = Request::post("/")
        .header("host", "x")
        .body(Full::new(Bytes::from("test")))
        .unwrap();
    send_h1(qp.addr, req).await;
    assert_eq!(next_line(&qp.lines).as_deref(), Some("4"));
    // A request through the app with K-Network-Probe is a probe: no line.
    get(
        qp.addr,
        "/",
        &[("k-network-probe", "queue"), ("user-agent", "curl/8")],
    )
    .await;
    get(
        qp.addr,
        "/",
        &[
            ("user-agent", "kube-probe/1.30"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    get(qp.addr, "/", &[]).await;
    assert_eq!(
        next_line(&qp.lines).as_deref(),
        Some("0"),
        "only the plain GET is logged"
    );
    drop(qp);

    let qp = start(
        app.port(),
        &config("{{.Request.Method}} {{.Response.Code}}", true),
    )
    .await;
    get(
        qp.addr,
        "/",
        &[
            ("user-agent", "kube-probe/1.30"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!(next_line(&qp.lines).as_deref(), Some("GET 200"));
}

// The default template renders one JSON line per request.
#[tokio::test]
async fn default_template_line_is_json() {
    let app = start_echo_app().await;
    let observability = serde_json::json!({"enableRequestLog": true}).to_string();
    let qp = start(app.port(), &observability).await;
    get(
        qp.addr,
        "/hello?x=1",
        &[("user-agent", "curl/8"), ("referer", "https://r/")],
    )
    .await;
    let line = next_line(&qp.lines).expect("a line");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["httpRequest"]["requestMethod"], "GET");
    assert_eq!(v["httpRequest"]["requestUrl"], "/hello?x=1");
    assert_eq!(v["httpRequest"]["status"], 200);
    assert_eq!(v["httpRequest"]["userAgent"], "curl/8");
    assert_eq!(v["httpRequest"]["protocol"], "HTTP/1.1");
    assert_eq!(v["httpRequest"]["serverIp"], "127.0.0.1");
    let size: u64 = v["httpRequest"]["responseSize"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 0, "{line}");
    assert!(v["httpRequest"]["latency"].as_str().unwrap().ends_with('s'));
}

// A template that fails at run time logs upstream's fallback line.
#[tokio::test]
async fn execution_error_logs_the_invalid_template_line() {
    let app = start_echo_app().await;
    let qp = start(app.port(), &config("{{.Request.NoSuchField}}", false)).await;
    get(qp.addr, "/x", &[]).await;
    let line = next_line(&qp.lines).expect("a line");
    assert!(line.starts_with("Invalid request log template: "), "{line}");
}

#[test]
fn invalid_observability_config_exits_1_naming_it() {
    let mut env = queue_proxy::config::test_env(free_port());
    env.insert("OBSERVABILITY_CONFIG".into(), "{not json".into());
    env.insert("QUEUE_SERVING_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_ADMIN_PORT".into(), free_port().to_string());
    env.insert("QUEUE_PROXY_METRICS_PORT".into(), free_port().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_queue-proxy"))
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .starts_with("queue-proxy: OBSERVABILITY_CONFIG: "),
        "{err}"
    );
}
