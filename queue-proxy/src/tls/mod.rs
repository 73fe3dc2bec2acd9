//! System-internal TLS on `QUEUE_SERVING_TLS_PORT` (8112), as upstream's
//! `pkg/queue/sharedmain/main.go` enables it: only when `tls.crt` and `tls.key`
//! exist in the certificates directory at start (the `serving-certs` secret the
//! reconciler mounts at `/var/lib/knative/certs`); then the main handler is
//! served over TLS on that port *in addition to* the plain port.
//!
//! - [`config`]: `QUEUE_PROXY_TLS_*` → rustls (knative.dev/pkg `network/tls/config.go`);
//! - [`certs`]: loading and hot-reloading the pair (`pkg/queue/certificate/watcher.go`).
//!
//! [`TlsSetup::from_config`] does the start-up checks in upstream's order and
//! fails on what upstream treats as fatal; [`TlsAcceptor`] is the handshake step
//! [`crate::server::serve_with`] runs before speaking HTTP. rustls uses the *ring*
//! provider, passed explicitly (no process-wide default is installed), so
//! aws-lc-rs and its cmake build stay out.

pub mod certs;
pub mod config;

use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::{Config, ConfigError, goparse};
use crate::server::{Accept, Accepted};
use certs::{CertError, CertPaths, CertWatcher, StatError};
use config::{PolicyError, TlsPolicy};

/// How long a client may take to complete the TLS handshake. Go's `http.Server`
/// allows its `ReadHeaderTimeout` (60 s) for it; we allow less, since the only
/// clients (activator, ingress) handshake in milliseconds and a silent
/// connection should not hold a task, or shutdown, for a minute.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up. Each of these stops the queue-proxy at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Stat(#[from] StatError),
    /// `QUEUE_SERVING_TLS_PORT` is not a port (worded like the other variables).
    #[error(transparent)]
    Port(ConfigError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("failed to create certWatcher: {0}")]
    Cert(#[from] CertError),
    /// rustls refused the combination (e.g. TLS 1.2 only without a TLS 1.2 suite).
    #[error("building the TLS server configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Everything the TLS listener needs, checked and loaded.
pub struct TlsSetup {
    /// The port to listen on (`QUEUE_SERVING_TLS_PORT`).
    pub port: u16,
    /// The handshake, with the policy and the current certificate.
    pub acceptor: TlsAcceptor,
    /// Reloads the certificate the acceptor serves; run [`CertWatcher::watch`].
    pub watcher: CertWatcher,
}

impl TlsSetup {
    /// `Ok(None)` when the certificate pair is not in `config.certs_dir`: no TLS
    /// listener. Otherwise parses the port and the `QUEUE_PROXY_TLS_*` policy
    /// (read only now, as upstream) and loads the pair.
    pub fn from_config(config: &Config) -> Result<Option<TlsSetup>, TlsError> {
        let paths = CertPaths::in_dir(&config.certs_dir);
        if !paths.both_exist()? {
            return Ok(None);
        }
        let raw_port = &config.queue_serving_tls_port;
        let port = goparse::parse_port(raw_port).map_err(|reason| {
            TlsError::Port(ConfigError::Parse {
                key: "QUEUE_SERVING_TLS_PORT",
                value: raw_port.clone(),
                ty: "port",
                reason,
            })
        })?;
        let policy = TlsPolicy::from_config(config)?;
        let provider = Arc::new(policy.provider());
        let watcher = CertWatcher::new(paths, provider.clone())?;
        let server = policy.server_config(provider, watcher.current())?;
        Ok(Some(TlsSetup {
            port,
            acceptor: TlsAcceptor::new(Arc::new(server)),
            watcher,
        }))
    }
}

/// The TLS handshake as a [`crate::server::Accept`] step, bounded by a timeout.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// Handshakes with `config`, giving up after [`HANDSHAKE_TIMEOUT`].
    pub fn new(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// The same acceptor with another handshake timeout.
    pub fn with_handshake_timeout(self, handshake_timeout: Duration) -> TlsAcceptor {
        TlsAcceptor {
            handshake_timeout,
            ..self
        }
    }
}

impl Accept for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl std::future::Future<Output = io::Result<Accepted<Self::Io>>> + Send + 'static {
        let handshake = self.inner.accept(stream);
        let limit = self.handshake_timeout;
        async move {
            tokio::time::timeout(limit, handshake)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
                .map(Accepted::new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NumError, test_env};
    use std::path::Path;

    fn config(dir: &Path, extra: &[(&str, &str)]) -> Config {
        let mut env = test_env(8080);
        env.insert(
            "QUEUE_PROXY_CERTS_DIR".into(),
            dir.to_str().unwrap().to_owned(),
        );
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        Config::from_env(&env).unwrap()
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "qp-tls-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_pair(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["qp.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    }

    #[test]
    fn without_files_nothing_else_is_checked() {
        let dir = temp_dir("none");
        let c = config(
            &dir,
            &[
                ("QUEUE_SERVING_TLS_PORT", "not a port"),
                ("QUEUE_PROXY_TLS_CIPHER_SUITES", "NOPE"),
            ],
        );
        assert!(TlsSetup::from_config(&c).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn with_files_port_then_policy_then_pair_are_checked() {
        let dir = temp_dir("checks");
        std::fs::write(dir.join("tls.crt"), "garbage").unwrap();
        std::fs::write(dir.join("tls.key"), "garbage").unwrap();

        let err = TlsSetup::from_config(&config(
            &dir,
            &[
                ("QUEUE_SERVING_TLS_PORT", "84x"),
                ("QUEUE_PROXY_TLS_CIPHER_SUITES", "NOPE"),
            ],
        ))
        .err()
        .unwrap();
        assert!(
            matches!(
                &err,
                TlsError::Port(ConfigError::Parse {
                    key: "QUEUE_SERVING_TLS_PORT",
                    reason: NumError::Syntax,
                    ..
                })
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            r#"assigning QUEUE_SERVING_TLS_PORT: converting "84x" to type port: invalid syntax"#
        );

        let err = TlsSetup::from_config(&config(
            &dir,
            &[("QUEUE_PROXY_TLS_CURVE_PREFERENCES", "X25519,NOPE")],
        ))
        .err()
        .unwrap();
        assert!(matches!(err, TlsError::Policy(_)), "{err}");

        let err = TlsSetup::from_config(&config(&dir, &[])).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("failed to create certWatcher: failed to parse certificate: "),
            "{err}"
        );

        write_pair(&dir);
        let setup = TlsSetup::from_config(&config(&dir, &[])).unwrap().unwrap();
        assert_eq!(setup.port, 8112);
        let err = TlsSetup::from_config(&config(
            &dir,
            &[
                ("QUEUE_PROXY_TLS_MIN_VERSION", "1.2"),
                ("QUEUE_PROXY_TLS_MAX_VERSION", "1.2"),
                ("QUEUE_PROXY_TLS_CIPHER_SUITES", "TLS_AES_128_GCM_SHA256"),
            ],
        ))
        .err()
        .unwrap();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
