//! System-internal TLS (spec §10, §12 check 60): with `tls.crt` and `tls.key` in
//! the certificates directory the main handler is also served over TLS, over
//! HTTP/1.1 and h2 (ALPN); the plain port stays up; replaced files are picked up
//! at the next reload and a broken swap keeps the old certificate;
//! `QUEUE_PROXY_TLS_*` shape the handshake or stop the start.
//!
//! Certificates are issued by a throwaway CA made with rcgen; clients trust that
//! CA only and tell certificates apart by their DER bytes.

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use queue_proxy::server::{Handler, Protocols, Shutdown, bind_dual_stack, serve_with};
use queue_proxy::tls::TlsAcceptor;
use support::{Got, Qp, collect, get, start_echo_app, within};

const NAME: &str = "qp.test";

// === certificates ===

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("qp-tls-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, and the serving certificates it issues.
struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: CertificateDer<'static>,
}

/// A leaf certificate: PEM files to write, DER to recognise it by.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "qp test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `qp.test` and 127.0.0.1 (so a client may send no SNI).
    fn leaf(&self, common_name: &str) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec![NAME.to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn install(dir: &Path, leaf: &Leaf) {
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
}

// === client ===

/// What the handshake settled.
struct Session {
    leaf: Vec<u8>,
    alpn: Option<Vec<u8>>,
    version: ProtocolVersion,
}

fn client_config(
    ca: &Ca,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<(TlsStream<TcpStream>, Session)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    let (_, conn) = tls.get_ref();
    let session = Session {
        leaf: conn.peer_certificates().unwrap()[0].to_vec(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version().unwrap(),
    };
    Ok((tls, session))
}

/// A TLS 1.3 client offering `h2` and `http/1.1`, like Go's.
fn default_client(ca: &Ca) -> Arc<ClientConfig> {
    client_config(ca, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"])
}

/// Sends `req` over a new TLS connection, as HTTP/2 when ALPN picked `h2`.
async fn send_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    req: Request<Full<Bytes>>,
) -> (Got, Session) {
    let (tls, session) = handshake(addr, config, NAME).await.expect("handshake");
    let resp = if session.alpn.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    (collect(resp).await, session)
}

/// The activator's health probe (check 26).
fn probe(addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::get(format!("https://{NAME}:{}/healthz", addr.port()))
        .header("user-agent", "Knative-Activator-Probe")
        .header("k-network-probe", "queue")
        .body(Full::default())
        .unwrap()
}

fn proxied(addr: SocketAddr) -> Request<Full<Bytes>> {
    Request::post(format!("https://{NAME}:{}/over/tls?q=1", addr.port()))
        .header("host", NAME)
        .body(Full::new(Bytes::from_static(b"secret")))
        .unwrap()
}

/// The leaf certificate a fresh connection is served.
async fn served_leaf(addr: SocketAddr, ca: &Ca) -> Vec<u8> {
    handshake(addr, default_client(ca), NAME)
        .await
        .expect("handshake")
        .1
        .leaf
}

/// A queue-proxy in front of `user_port` with certificates from `dir`.
async fn start_with_certs(user_port: u16, dir: &TempDir, extra: &[(&str, &str)]) -> Qp {
    let mut overrides = vec![("QUEUE_PROXY_CERTS_DIR", dir.path())];
    overrides.extend_from_slice(extra);
    Qp::start(user_port, &overrides).await
}

/// `Qp::start`'s environment, for tests that drive [`queue_proxy::Sidecar`] themselves.
fn test_config(user_port: u16, overrides: &[(&str, &str)]) -> queue_proxy::config::Config {
    let mut env: HashMap<String, String> = queue_proxy::config::test_env(user_port);
    for port in [
        "QUEUE_SERVING_PORT",
        "QUEUE_SERVING_TLS_PORT",
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
    ] {
        env.insert(port.into(), "0".into());
    }
    env.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "0".into());
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    queue_proxy::config::Config::from_env(&env).expect("valid test env")
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

// === check 60 ===

#[tokio::test]
async fn tls_port_serves_what_the_plain_port_serves_over_h1_and_h2() {
    let app = start_echo_app().await;
    let ca = Ca::new();
    let leaf = ca.leaf("first");
    let dir = TempDir::new("same");
    install(&dir.0, &leaf);
    let qp = start_with_certs(app.port(), &dir, &[]).await;
    let tls = qp.tls.expect("a TLS listener");
    assert_ne!(tls.port(), qp.main.port());

    for (alpn, want_version) in [
        (&[&b"http/1.1"[..]][..], http::Version::HTTP_11),
        (&[&b"h2"[..], &b"http/1.1"[..]][..], http::Version::HTTP_2),
    ] {
        let client = client_config(&ca, &[&rustls::version::TLS13], alpn);
        let (got, session) = within(10, send_tls(tls, client.clone(), probe(tls))).await;
        assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));
        assert_eq!(session.leaf, leaf.der);
        assert_eq!(session.alpn.as_deref(), Some(alpn[0]));
        assert_eq!(session.version, ProtocolVersion::TLSv1_3);

        let (got, _) = within(10, send_tls(tls, client, proxied(tls))).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        let text = got.text();
        assert!(text.contains("method=POST\npath=/over/tls?q=1\n"), "{text}");
        assert!(text.contains("body=secret\n"), "{text}");
        // Incoming HTTP/2 is forwarded as h2c, HTTP/1.1 as HTTP/1.1 (§10).
        assert!(
            text.contains(&format!("version={want_version:?}\n")),
            "{want_version:?}: {text}"
        );
    }

    // The plain port answers the same probe, the same way.
    let got = get(
        qp.main,
        "/healthz",
        &[
            ("user-agent", "Knative-Activator-Probe"),
            ("k-network-probe", "queue"),
        ],
    )
    .await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));

    // The certificate does not depend on the SNI: none at all (an IP name).
    let (_, session) = handshake(tls, default_client(&ca), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(session.leaf, leaf.der);

    qp.stop().await;
}

#[tokio::test]
async fn replaced_files_are_served_after_the_reload_and_a_broken_swap_keeps_the_old() {
    let app = start_echo_app().await;
    let ca = Ca::new();
    let (first, second, third) = (ca.leaf("first"), ca.leaf("second"), ca.leaf("third"));
    let dir = TempDir::new("reload");
    install(&dir.0, &first);
    let mut sidecar = queue_proxy::Sidecar::bind(test_config(
        app.port(),
        &[("QUEUE_PROXY_CERTS_DIR", dir.path())],
    ))
    .unwrap();
    let interval = Duration::from_millis(100);
    sidecar.set_cert_reload_interval(interval);
    let tls = loopback(sidecar.tls_addr().expect("a TLS listener"));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(sidecar.run(async move {
        let _ = stopped.await;
    }));
    assert_eq!(served_leaf(tls, &ca).await, first.der);

    // A connection opened before the swap keeps working after it.
    let (early, _) = handshake(
        tls,
        client_config(&ca, &[&rustls::version::TLS13], &[b"http/1.1"]),
        NAME,
    )
    .await
    .unwrap();

    install(&dir.0, &second);
    within(5, async {
        while served_leaf(tls, &ca).await != second.der {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(early))
        .await
        .unwrap();
    tokio::spawn(conn);
    let got = collect(sender.send_request(probe(tls)).await.unwrap()).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));

    // A garbage key: several reloads later the second certificate is still served,
    // and requests still work.
    std::fs::write(dir.0.join("tls.crt"), &third.cert_pem).unwrap();
    std::fs::write(
        dir.0.join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\ngarbage\n",
    )
    .unwrap();
    tokio::time::sleep(interval * 5).await;
    let (got, session) = within(10, send_tls(tls, default_client(&ca), probe(tls))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(session.leaf, second.der);

    // Once the key is fixed, the third certificate is served.
    std::fs::write(dir.0.join("tls.key"), &third.key_pem).unwrap();
    within(5, async {
        while served_leaf(tls, &ca).await != third.der {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let _ = stop.send(());
    within(10, running).await.unwrap();
}

#[tokio::test]
async fn without_both_files_there_is_no_tls_listener() {
    let app = start_echo_app().await;
    let dir = TempDir::new("none");
    // Settings that would be refused are not even read.
    let bad = [("QUEUE_PROXY_TLS_CIPHER_SUITES", "NOPE")];
    let qp = start_with_certs(app.port(), &dir, &bad).await;
    assert_eq!(qp.tls, None);
    qp.stop().await;

    let leaf = Ca::new().leaf("only-cert");
    std::fs::write(dir.0.join("tls.crt"), &leaf.cert_pem).unwrap();
    let qp = start_with_certs(app.port(), &dir, &bad).await;
    assert_eq!(qp.tls, None);
    let got = get(qp.main, "/x", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    qp.stop().await;
}

#[tokio::test]
async fn tls12_clients_need_min_version_1_2() {
    let app = start_echo_app().await;
    let ca = Ca::new();
    let leaf = ca.leaf("v12");
    let dir = TempDir::new("v12");
    install(&dir.0, &leaf);
    let tls12 = client_config(&ca, &[&rustls::version::TLS12], &[b"http/1.1"]);

    // Default: TLS 1.3 only.
    let qp = start_with_certs(app.port(), &dir, &[]).await;
    let tls = qp.tls.unwrap();
    let err = within(10, handshake(tls, tls12.clone(), NAME)).await.err();
    assert!(err.is_some(), "a TLS 1.2 client got through");
    assert_eq!(served_leaf(tls, &ca).await, leaf.der);
    qp.stop().await;

    let qp = start_with_certs(app.port(), &dir, &[("QUEUE_PROXY_TLS_MIN_VERSION", "1.2")]).await;
    let tls = qp.tls.unwrap();
    let (got, session) = within(10, send_tls(tls, tls12.clone(), probe(tls))).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "queue"));
    assert_eq!(session.version, ProtocolVersion::TLSv1_2);
    assert_eq!(session.leaf, leaf.der);
    // TLS 1.3 is still the first choice.
    let (_, session) = within(10, send_tls(tls, default_client(&ca), probe(tls))).await;
    assert_eq!(session.version, ProtocolVersion::TLSv1_3);
    qp.stop().await;

    // Capped at 1.2, with one TLS 1.2 suite and one curve.
    let qp = start_with_certs(
        app.port(),
        &dir,
        &[
            ("QUEUE_PROXY_TLS_MIN_VERSION", "1.2"),
            ("QUEUE_PROXY_TLS_MAX_VERSION", "1.2"),
            (
                "QUEUE_PROXY_TLS_CIPHER_SUITES",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ),
            ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", "P-384"),
        ],
    )
    .await;
    let tls = qp.tls.unwrap();
    let err = within(10, handshake(tls, default_client(&ca), NAME))
        .await
        .err();
    assert!(err.is_some(), "a TLS 1.3 client got through");
    let (tls_stream, session) = within(10, handshake(tls, tls12, NAME)).await.unwrap();
    assert_eq!(session.version, ProtocolVersion::TLSv1_2);
    let (_, conn) = tls_stream.get_ref();
    assert_eq!(
        conn.negotiated_cipher_suite().unwrap().suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    assert_eq!(
        conn.negotiated_key_exchange_group().unwrap().name(),
        rustls::NamedGroup::secp384r1
    );
    qp.stop().await;
}

#[tokio::test]
async fn unusable_tls_settings_fail_the_bind_naming_the_variable() {
    let ca = Ca::new();
    let dir = TempDir::new("bad");
    install(&dir.0, &ca.leaf("bad"));
    for (var, value) in [
        (
            "QUEUE_PROXY_TLS_CIPHER_SUITES",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            "QUEUE_PROXY_TLS_CIPHER_SUITES",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        ),
        ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", "CurveP128"),
        ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", "P-521"),
        ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", "X25519MLKEM768"),
        ("QUEUE_PROXY_TLS_MIN_VERSION", "1.1"),
        ("QUEUE_PROXY_TLS_MAX_VERSION", "1.4"),
        ("QUEUE_SERVING_TLS_PORT", "84x"),
    ] {
        let config = test_config(1, &[("QUEUE_PROXY_CERTS_DIR", dir.path()), (var, value)]);
        let err = queue_proxy::Sidecar::bind(config)
            .err()
            .expect("bind fails");
        let msg = err.to_string();
        assert!(
            msg.contains(var) && msg.contains(value),
            "{var}={value}: {msg}"
        );
    }

    // A key that is not the certificate's: the load fails.
    install(&dir.0, &ca.leaf("mismatch"));
    std::fs::write(dir.0.join("tls.key"), ca.leaf("other").key_pem).unwrap();
    let config = test_config(1, &[("QUEUE_PROXY_CERTS_DIR", dir.path())]);
    let msg = queue_proxy::Sidecar::bind(config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("failed to create certWatcher: failed to parse certificate:"),
        "{msg}"
    );
}

#[test]
fn the_binary_exits_1_on_an_unknown_curve() {
    let ca = Ca::new();
    let dir = TempDir::new("cli");
    install(&dir.0, &ca.leaf("cli"));
    let mut env = queue_proxy::config::test_env(1);
    for port in [
        "QUEUE_SERVING_PORT",
        "QUEUE_SERVING_TLS_PORT",
        "QUEUE_PROXY_ADMIN_PORT",
        "QUEUE_PROXY_METRICS_PORT",
    ] {
        env.insert(port.into(), "0".into());
    }
    env.insert("QUEUE_PROXY_CERTS_DIR".into(), dir.path().into());
    env.insert(
        "QUEUE_PROXY_TLS_CURVE_PREFERENCES".into(),
        "X25519,CurveP128".into(),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_queue-proxy"))
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Up to 20 s: a proxy that started anyway is killed, not waited for.
    let status = (0..1000)
        .find_map(|_| {
            let status = child.try_wait().unwrap();
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            status
        })
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("queue-proxy kept running with an unknown curve");
        });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "queue-proxy: invalid QUEUE_PROXY_TLS_CURVE_PREFERENCES: unknown curve \"CurveP128\""
        ),
        "{stderr}"
    );
}

// === the handshake step ===

struct Hello;

impl Handler for Hello {
    fn handle(
        self: Arc<Self>,
        _: Request<Incoming>,
        _: SocketAddr,
    ) -> impl std::future::Future<Output = http::Response<queue_proxy::body::ProxyBody>> + Send + 'static
    {
        std::future::ready(http::Response::new(queue_proxy::body::ProxyBody::local(
            "hello",
        )))
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_and_does_not_hold_shutdown() {
    let ca = Ca::new();
    let leaf = ca.leaf("timeout");
    let dir = TempDir::new("timeout");
    install(&dir.0, &leaf);
    let config = test_config(1, &[("QUEUE_PROXY_CERTS_DIR", dir.path())]);
    let setup = queue_proxy::tls::TlsSetup::from_config(&config)
        .unwrap()
        .unwrap();
    let listener = bind_dual_stack(0).unwrap();
    let addr = loopback(listener.local_addr().unwrap());
    let (trigger, stop) = Shutdown::new();
    let acceptor: TlsAcceptor = setup
        .acceptor
        .with_handshake_timeout(Duration::from_millis(300));
    let server = tokio::spawn(serve_with(
        listener,
        acceptor,
        Arc::new(Hello),
        Protocols::Http1AndH2c,
        queue_proxy::server::READ_HEADER_TIMEOUT,
        stop,
    ));

    // Says nothing: closed by the server once the timeout passes.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = within(5, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A real client meanwhile is served.
    let (got, session) = within(10, send_tls(addr, default_client(&ca), probe(addr))).await;
    assert_eq!((got.status, got.text().as_str()), (StatusCode::OK, "hello"));
    assert_eq!(session.leaf, leaf.der);

    // Shutdown waits for a handshake in progress at most the handshake timeout.
    let _pending = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    trigger.fire();
    within(5, server).await.unwrap();
}
