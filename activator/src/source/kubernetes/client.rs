//! The API client and the startup version check, as upstream's `sharedmain`.
//!
//! - Client: `KUBECONFIG` (a colon-separated list of files, merged as kubectl
//!   does) when set, else the in-cluster service account. TLS is rustls with
//!   the ring provider; plain `http://` servers (tests) work too.
//! - Version: `GET /version` must report at least `KUBERNETES_MIN_VERSION`
//!   (default `v1.34.0`; pre-releases of that version pass, as upstream), tried
//!   every second for up to a minute.

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("KUBECONFIG: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("in-cluster config: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("building the API client: {0}")]
    Build(#[from] kube::Error),
}

/// A client from `kubeconfig` (the value of `KUBECONFIG`), else in-cluster.
pub async fn client(kubeconfig: Option<&str>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig.filter(|k| !k.is_empty()) {
        Some(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            for path in paths.split(':').filter(|p| !p.is_empty()) {
                let next = Kubeconfig::read_from(path)?;
                merged = Some(match merged {
                    Some(first) => first.merge(next)?,
                    None => next,
                });
            }
            let merged = merged.unwrap_or_default();
            kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::incluster()?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// A Kubernetes `major.minor.patch` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion(pub u64, pub u64, pub u64);

/// Upstream's `KUBERNETES_MIN_VERSION` default.
pub const DEFAULT_MIN_VERSION: KubeVersion = KubeVersion(1, 34, 0);

/// Text that is not `[v]major.minor.patch[-pre][+build]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version like v1.34.0")]
pub struct BadVersion(pub String);

impl FromStr for KubeVersion {
    type Err = BadVersion;

    /// Pre-release and build suffixes are dropped: upstream lets pre-releases
    /// of the minimum version pass.
    fn from_str(text: &str) -> Result<Self, BadVersion> {
        let bad = || BadVersion(text.to_owned());
        let core = text.strip_prefix('v').unwrap_or(text);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.').map(|p| p.parse::<u64>().map_err(|_| bad()));
        let version = KubeVersion(
            parts.next().ok_or_else(bad)??,
            parts.next().ok_or_else(bad)??,
            parts.next().ok_or_else(bad)??,
        );
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Why the version check failed.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "kubernetes version {found:?} is not compatible, need at least \"{min}\" \
         (this can be overridden with the env var \"KUBERNETES_MIN_VERSION\")"
    )]
    TooOld { found: String, min: KubeVersion },
    #[error("kubernetes version {0:?} cannot be parsed")]
    Unparsable(String),
    #[error("getting the kubernetes version: {0}")]
    Api(#[from] kube::Error),
}

/// Checks the server's version every `interval` until it passes or `wait`
/// has gone by; the last failure is the error.
pub async fn check_version(
    client: &kube::Client,
    min: KubeVersion,
    interval: Duration,
    wait: Duration,
) -> Result<(), VersionError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let result = check_version_once(client, min).await;
        match result {
            Ok(()) => return Ok(()),
            Err(err) if tokio::time::Instant::now() + interval > deadline => return Err(err),
            Err(err) => tracing::warn!(error = %err, "kubernetes version check failed; retrying"),
        }
        tokio::time::sleep(interval).await;
    }
}

async fn check_version_once(client: &kube::Client, min: KubeVersion) -> Result<(), VersionError> {
    let info = client.apiserver_version().await?;
    let found: KubeVersion = info
        .git_version
        .parse()
        .map_err(|_| VersionError::Unparsable(info.git_version.clone()))?;
    if found < min {
        return Err(VersionError::TooOld {
            found: info.git_version,
            min,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_semver_without_pre_releases() {
        assert_eq!("v1.34.0".parse(), Ok(KubeVersion(1, 34, 0)));
        assert_eq!("1.35.2+k3s1".parse(), Ok(KubeVersion(1, 35, 2)));
        assert_eq!("v1.34.0-gke.100".parse(), Ok(KubeVersion(1, 34, 0)));
        assert!("v1.34".parse::<KubeVersion>().is_err());
        assert!("latest".parse::<KubeVersion>().is_err());
        assert!(KubeVersion(1, 33, 9) < DEFAULT_MIN_VERSION);
        assert_eq!(DEFAULT_MIN_VERSION.to_string(), "v1.34.0");
    }
}
