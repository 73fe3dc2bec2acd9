//! The serving certificate: found, loaded, and reloaded when its files change,
//! mirroring upstream's `pkg/queue/certificate/watcher.go` (`CertWatcher`) and
//! the `exists` check of `pkg/queue/sharedmain/main.go`.
//!
//! - TLS is on only if `tls.crt` and `tls.key` both exist at start; a stat error
//!   other than "not found" is fatal.
//! - The pair is loaded at start (a failure is fatal), then both files are re-read
//!   every interval (upstream: 1 minute). When either changed, the pair is parsed
//!   again and swapped in; a read or parse failure is logged and the old
//!   certificate kept. As upstream, whose checksums only move on success, a
//!   broken pair is retried (and logged) at every tick until it is fixed.
//! - Upstream compares SHA-256 checksums; we keep the last loaded bytes (a few KiB)
//!   and compare those: the same decision without a hash dependency.
//! - The certificate does not depend on the SNI: [`CurrentCert`] answers every
//!   ClientHello with the one pair.
//!
//! PEM handling follows Go's `tls.X509KeyPair`: every `CERTIFICATE` block of the
//! certificate file is the chain (leaf first), the first private key of the key
//! file (PKCS#8, PKCS#1 or SEC1) is the key, and the key must match the leaf.

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::server::Shutdown;

/// The certificate chain's file name in the certificates directory.
pub const CERT_FILE: &str = "tls.crt";
/// The private key's file name in the certificates directory.
pub const KEY_FILE: &str = "tls.key";
/// How often upstream re-reads the files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Where the certificate pair lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPaths {
    /// `<dir>/tls.crt` and `<dir>/tls.key`.
    pub fn in_dir(dir: impl AsRef<Path>) -> CertPaths {
        let dir = dir.as_ref();
        CertPaths {
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }

    /// Whether both files exist (upstream's `exists(cert) && exists(key)`, which
    /// does not look at the key when the certificate is missing).
    pub fn both_exist(&self) -> Result<bool, StatError> {
        Ok(exists(&self.cert)? && exists(&self.key)?)
    }
}

fn exists(path: &Path) -> Result<bool, StatError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(StatError {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether a certificate file exists could not be told (upstream: fatal).
#[derive(Debug, thiserror::Error)]
#[error("failed to verify the file path {path:?}: {source}")]
pub struct StatError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Why a certificate pair could not be loaded. Messages follow upstream's.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("failed to load certificate file in {}: {source}", path.display())]
    ReadCert {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to load key file in {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse certificate: {0}")]
    Parse(#[from] ParseError),
}

/// Why a PEM pair is not a usable certificate and key.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("reading certificate PEM: {0}")]
    CertPem(pem::Error),
    #[error("failed to find any PEM data in certificate input")]
    NoCertificate,
    #[error("reading private key PEM: {0}")]
    KeyPem(pem::Error),
    #[error("failed to find any PEM data in key input")]
    NoKey,
    /// An unsupported key type, or a key that does not match the leaf certificate.
    #[error("{0}")]
    Key(rustls::Error),
}

/// Parses a PEM certificate chain and private key into a pair rustls can serve,
/// with `provider`'s key loader.
pub fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ParseError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ParseError::CertPem)?;
    if chain.is_empty() {
        return Err(ParseError::NoCertificate);
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(ParseError::NoKey),
        Err(err) => return Err(ParseError::KeyPem(err)),
    };
    CertifiedKey::from_der(chain, key, provider).map_err(ParseError::Key)
}

/// The certificate being served, swapped in place by [`CertWatcher`]. Handshakes
/// take the current pair under a read lock held only to clone an `Arc`.
pub struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    /// The pair handshakes get now.
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().clone()
    }

    fn set(&self, pair: CertifiedKey) {
        *self.0.write() = Arc::new(pair);
    }
}

impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Loads the certificate pair and reloads it when the files change.
pub struct CertWatcher {
    paths: CertPaths,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    /// The bytes the current pair was parsed from.
    loaded: (Vec<u8>, Vec<u8>),
}

impl CertWatcher {
    /// Loads the pair at `paths` with `provider` (upstream: a failure is fatal).
    pub fn new(paths: CertPaths, provider: Arc<CryptoProvider>) -> Result<CertWatcher, CertError> {
        let (cert, key) = read_pair(&paths)?;
        let pair = parse_pair(&cert, &key, &provider)?;
        Ok(CertWatcher {
            paths,
            provider,
            current: Arc::new(CurrentCert(RwLock::new(Arc::new(pair)))),
            loaded: (cert, key),
        })
    }

    /// What the TLS server config resolves certificates with.
    pub fn current(&self) -> Arc<CurrentCert> {
        self.current.clone()
    }

    /// Re-reads both files and, if either changed, swaps in the new pair.
    /// `Ok(true)` when a new pair is now served; on error the old one stays.
    pub fn reload(&mut self) -> Result<bool, CertError> {
        let (cert, key) = read_pair(&self.paths)?;
        if (&cert, &key) == (&self.loaded.0, &self.loaded.1) {
            return Ok(false);
        }
        let pair = parse_pair(&cert, &key, &self.provider)?;
        self.current.set(pair);
        self.loaded = (cert, key);
        Ok(true)
    }

    /// Reloads every `interval` until `shutdown` fires.
    pub async fn watch(mut self, interval: Duration, shutdown: Shutdown) {
        tracing::info!(
            cert = %self.paths.cert.display(),
            key = %self.paths.key.display(),
            ?interval,
            "watching the serving certificate for changes"
        );
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.fired();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => match self.reload() {
                    Ok(true) => tracing::info!(
                        "Certificate and/or key have changed on disk and were reloaded."
                    ),
                    Ok(false) => {}
                    // Keep serving the old pair and try again next tick.
                    Err(err) => tracing::error!(error = %err, "reloading the serving certificate"),
                },
                () = &mut stop => return,
            }
        }
    }
}

/// Leaves the file contents out: one of them is the private key.
impl fmt::Debug for CertWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertWatcher")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

fn read_pair(paths: &CertPaths) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let cert = std::fs::read(&paths.cert).map_err(|source| CertError::ReadCert {
        path: paths.cert.clone(),
        source,
    })?;
    let key = std::fs::read(&paths.key).map_err(|source| CertError::ReadKey {
        path: paths.key.clone(),
        source,
    })?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "qp-certs-{tag}-{}-{}",
                std::process::id(),
                fastrand_suffix()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fastrand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    fn self_signed(name: &str) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(ring::default_provider())
    }

    fn leaf(watcher: &CertWatcher) -> Vec<u8> {
        watcher.current().get().cert[0].to_vec()
    }

    #[test]
    fn both_files_must_exist() {
        let dir = TempDir::new("exist");
        let paths = CertPaths::in_dir(&dir.0);
        assert!(!paths.both_exist().unwrap());
        std::fs::write(&paths.cert, "x").unwrap();
        assert!(!paths.both_exist().unwrap());
        std::fs::remove_file(&paths.cert).unwrap();
        std::fs::write(&paths.key, "x").unwrap();
        assert!(!paths.both_exist().unwrap());
        std::fs::write(&paths.cert, "x").unwrap();
        assert!(paths.both_exist().unwrap());
    }

    #[test]
    fn a_stat_error_other_than_not_found_is_reported() {
        let dir = TempDir::new("stat");
        // A path under a regular file: ENOTDIR, not ENOENT.
        let file = dir.0.join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = CertPaths::in_dir(&file).both_exist().unwrap_err();
        assert_eq!(err.path, file.join(CERT_FILE));
        assert!(
            err.to_string()
                .starts_with(&format!("failed to verify the file path {:?}: ", err.path)),
            "{err}"
        );
    }

    #[test]
    fn loads_reloads_on_change_and_keeps_the_old_pair_on_failure() {
        let dir = TempDir::new("reload");
        let paths = CertPaths::in_dir(&dir.0);
        let (cert1, key1, der1) = self_signed("one.example");
        std::fs::write(&paths.cert, &cert1).unwrap();
        std::fs::write(&paths.key, &key1).unwrap();
        let mut watcher = CertWatcher::new(paths.clone(), provider()).unwrap();
        assert_eq!(leaf(&watcher), der1);
        assert!(!watcher.reload().unwrap(), "unchanged files");

        let (cert2, key2, der2) = self_signed("two.example");
        std::fs::write(&paths.cert, &cert2).unwrap();
        std::fs::write(&paths.key, &key2).unwrap();
        assert!(watcher.reload().unwrap());
        assert_eq!(leaf(&watcher), der2);

        // A garbage key: the error is reported, the second pair stays.
        std::fs::write(&paths.key, "garbage").unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(matches!(err, CertError::Parse(ParseError::NoKey)), "{err}");
        assert_eq!(leaf(&watcher), der2);
        // A key of another certificate: refused too.
        std::fs::write(&paths.key, &key1).unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(matches!(err, CertError::Parse(ParseError::Key(_))), "{err}");
        assert_eq!(leaf(&watcher), der2);
        // A missing file: the read error names it.
        std::fs::remove_file(&paths.key).unwrap();
        let err = watcher.reload().unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "failed to load key file in {}",
                paths.key.display()
            )),
            "{err}"
        );
        assert_eq!(leaf(&watcher), der2);
        // Fixed: swapped in at the next reload.
        std::fs::write(&paths.cert, &cert1).unwrap();
        std::fs::write(&paths.key, &key1).unwrap();
        assert!(watcher.reload().unwrap());
        assert_eq!(leaf(&watcher), der1);
    }

    #[test]
    fn a_broken_pair_at_start_is_an_error() {
        let dir = TempDir::new("start");
        let paths = CertPaths::in_dir(&dir.0);
        let err = CertWatcher::new(paths.clone(), provider()).unwrap_err();
        assert!(matches!(err, CertError::ReadCert { .. }), "{err}");
        let (cert, _, _) = self_signed("x.example");
        std::fs::write(&paths.cert, "no pem here").unwrap();
        std::fs::write(&paths.key, "no pem here").unwrap();
        let err = CertWatcher::new(paths.clone(), provider()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to parse certificate: failed to find any PEM data in certificate input"
        );
        std::fs::write(&paths.cert, cert).unwrap();
        let err = CertWatcher::new(paths, provider()).unwrap_err();
        assert!(matches!(err, CertError::Parse(ParseError::NoKey)), "{err}");
    }

    #[test]
    fn a_chain_is_served_leaf_first() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["leaf.example".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let chain = format!("{}{}", leaf.pem(), ca.pem());
        let pair = parse_pair(
            chain.as_bytes(),
            key.serialize_pem().as_bytes(),
            &provider(),
        )
        .unwrap();
        assert_eq!(pair.cert.len(), 2);
        assert_eq!(pair.cert[0].as_ref(), leaf.der().as_ref());
        assert_eq!(pair.cert[1].as_ref(), ca.der().as_ref());
    }

    #[tokio::test]
    async fn the_watch_task_swaps_and_stops_on_shutdown() {
        let dir = TempDir::new("watch");
        let paths = CertPaths::in_dir(&dir.0);
        let (cert1, key1, der1) = self_signed("one.example");
        std::fs::write(&paths.cert, &cert1).unwrap();
        std::fs::write(&paths.key, &key1).unwrap();
        let watcher = CertWatcher::new(paths.clone(), provider()).unwrap();
        let current = watcher.current();
        let (trigger, stop) = Shutdown::new();
        let task = tokio::spawn(watcher.watch(Duration::from_millis(20), stop));

        let (cert2, key2, der2) = self_signed("two.example");
        std::fs::write(&paths.key, &key2).unwrap();
        std::fs::write(&paths.cert, &cert2).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while current.get().cert[0].as_ref() == der1.as_slice() {
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(current.get().cert[0].as_ref(), der2.as_slice());
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("watch stops")
            .unwrap();
    }
}
