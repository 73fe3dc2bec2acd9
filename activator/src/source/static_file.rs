//! A [`RevisionSource`] read from a JSON file: the activator without Kubernetes.
//!
//! Upstream learns revisions, private Endpoints, private Services and public
//! Endpoints from informers (`cmd/activator/main.go`,
//! `pkg/activator/net/revision_backends.go`, `pkg/activator/net/throttler.go`).
//! This source stands in for all four with one file, so the data path can run
//! (and be tested, and demoed) on a laptop. It can be re-read on a timer, and
//! tests flip state programmatically with [`StaticFileSource::set`] and
//! [`StaticFileSource::modify`].
//!
//! # Format
//!
//! ```json
//! {"revisions": [
//!   {"namespace": "default", "name": "hello-00001",
//!    "containerConcurrency": 10, "timeoutSeconds": 300,
//!    "responseStartTimeoutSeconds": null, "idleTimeoutSeconds": null,
//!    "protocol": "http1",
//!    "ready": ["127.0.0.1:8012"], "notReady": [],
//!    "clusterIP": null, "activators": [],
//!    "probeOptimisation": true}
//! ]}
//! ```
//!
//! | field | meaning (upstream origin) | default |
//! |---|---|---|
//! | `namespace`, `name` | the Revision (required, non-empty; unique together) | — |
//! | `service`, `configuration` | its `serving.knative.dev/service` and `/configuration` labels (metrics labels) | `""` |
//! | `containerConcurrency` | `spec.containerConcurrency`; 0 = unlimited | `0` |
//! | `timeoutSeconds` | `spec.timeoutSeconds` (`null` also means the default) | `300` |
//! | `responseStartTimeoutSeconds` | `spec.responseStartTimeoutSeconds` | `null` |
//! | `idleTimeoutSeconds` | `spec.idleTimeoutSeconds` | `null` |
//! | `protocol` | `http1` or `h2c` (the serving port's name) | `http1` |
//! | `ready` | private Endpoints `addresses`, as `host:port` (IPv6 bracketed) | `[]` |
//! | `notReady` | private Endpoints `notReadyAddresses`, as `host:port` | `[]` |
//! | `clusterIP` | the private Service's `clusterIP:port`, or `null` | `null` |
//! | `activators` | IPs in the revision's public Endpoints (subsetting) | `[]` |
//! | `probeOptimisation` | off for an exec readiness probe or any startup probe | `true` |
//!
//! Unknown fields are errors (a misspelt `notready` would otherwise silently
//! mean "no pods"), as is an address listed both ready and not ready.
//!
//! # Reloading
//!
//! [`StaticFileSource::spawn_reload`] polls the file: when its modification
//! time or length changes (or while the modification time is too recent to
//! trust, as git does for "racily clean" files) it re-reads it, and publishes a
//! new [`Snapshot`] only if the contents changed and parse. A broken edit is
//! logged once and the previous snapshot stays in force until the file is
//! fixed; a state set programmatically stays until the file changes.

use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{RevisionSource, RevisionState, Snapshot};
use crate::revision::{Protocol, Revision, RevisionKey};

/// `spec.timeoutSeconds` when the file leaves it out (the webhook's default).
const DEFAULT_TIMEOUT_SECONDS: u64 = 300;

/// A modification time this close to "now" may hide a second write in the same
/// clock tick, so the file is re-read until its mtime is older than this.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Why a revision file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StaticSourceError {
    #[error("revision file {}: cannot read it: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or not the expected shape (the message carries line and column).
    #[error("revision file {}: {source}", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Well-formed, but one entry makes no sense.
    #[error("revision file {}: revisions[{index}] ({revision}): {problem}", .path.display())]
    Invalid {
        path: PathBuf,
        /// Position of the entry in `revisions`.
        index: usize,
        /// `namespace/name` as written.
        revision: String,
        problem: EntryProblem,
    },
}

/// What is wrong with one entry of `revisions`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("namespace is empty")]
    EmptyNamespace,
    #[error("name is empty")]
    EmptyName,
    #[error("listed more than once")]
    Duplicate,
    #[error("{field}: {value:?} is not a host:port address")]
    BadAddress { field: &'static str, value: String },
    #[error("{value:?} is listed in both ready and notReady")]
    ReadyAndNotReady { value: String },
    #[error("activators: {value:?} is not an IP address")]
    BadActivator { value: String },
}

/// The file's top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    revisions: Vec<Entry>,
}

/// One revision as written in the file.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    namespace: String,
    name: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    configuration: String,
    #[serde(default)]
    container_concurrency: u32,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    response_start_timeout_seconds: Option<u64>,
    #[serde(default)]
    idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    protocol: ProtocolName,
    #[serde(default)]
    ready: Vec<String>,
    #[serde(default)]
    not_ready: Vec<String>,
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default)]
    activators: Vec<String>,
    #[serde(default = "probe_optimisation_default")]
    probe_optimisation: bool,
}

fn probe_optimisation_default() -> bool {
    true
}

/// `protocol` values: upstream's `ProtocolType` names.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProtocolName {
    #[default]
    Http1,
    H2c,
}

impl From<ProtocolName> for Protocol {
    fn from(name: ProtocolName) -> Protocol {
        match name {
            ProtocolName::Http1 => Protocol::Http1,
            ProtocolName::H2c => Protocol::H2c,
        }
    }
}

/// Parses a file's contents into the revisions it lists; `path` only names the
/// file in errors. Public so the fuzz targets (`fuzz-targets/`) reach it without
/// touching the filesystem.
pub fn parse(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<RevisionKey, RevisionState>, StaticSourceError> {
    let doc: FileDoc =
        serde_json::from_slice(bytes).map_err(|source| StaticSourceError::Parse {
            path: path.to_owned(),
            source,
        })?;
    let mut revisions = BTreeMap::new();
    for (index, entry) in doc.revisions.into_iter().enumerate() {
        let invalid = |entry: &Entry, problem| StaticSourceError::Invalid {
            path: path.to_owned(),
            index,
            revision: format!("{}/{}", entry.namespace, entry.name),
            problem,
        };
        if let Err(problem) = check_entry(&entry) {
            return Err(invalid(&entry, problem));
        }
        let key = RevisionKey::new(entry.namespace.clone(), entry.name.clone());
        if revisions.contains_key(&key) {
            return Err(invalid(&entry, EntryProblem::Duplicate));
        }
        revisions.insert(key.clone(), entry.into_state(key));
    }
    Ok(revisions)
}

fn check_entry(entry: &Entry) -> Result<(), EntryProblem> {
    if entry.namespace.is_empty() {
        return Err(EntryProblem::EmptyNamespace);
    }
    if entry.name.is_empty() {
        return Err(EntryProblem::EmptyName);
    }
    let addresses = [("ready", &entry.ready), ("notReady", &entry.not_ready)]
        .into_iter()
        .flat_map(|(field, list)| list.iter().map(move |value| (field, value)))
        .chain(entry.cluster_ip.iter().map(|value| ("clusterIP", value)));
    for (field, value) in addresses {
        if !is_host_port(value) {
            return Err(EntryProblem::BadAddress {
                field,
                value: value.clone(),
            });
        }
    }
    let ready: BTreeSet<&String> = entry.ready.iter().collect();
    if let Some(value) = entry.not_ready.iter().find(|a| ready.contains(a)) {
        return Err(EntryProblem::ReadyAndNotReady {
            value: value.clone(),
        });
    }
    if let Some(value) = entry
        .activators
        .iter()
        .find(|ip| ip.parse::<IpAddr>().is_err())
    {
        return Err(EntryProblem::BadActivator {
            value: value.clone(),
        });
    }
    Ok(())
}

/// `host:port` with a numeric port; an IPv6 host must be bracketed.
fn is_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().is_err() || host.is_empty() {
        return false;
    }
    match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => !host.contains(':') && !host.contains(']'),
    }
}

impl Entry {
    fn into_state(self, key: RevisionKey) -> RevisionState {
        RevisionState {
            revision: Revision {
                key,
                service: self.service,
                configuration: self.configuration,
                container_concurrency: self.container_concurrency,
                timeout: Duration::from_secs(
                    self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                ),
                response_start_timeout: self
                    .response_start_timeout_seconds
                    .map(Duration::from_secs),
                idle_timeout: self.idle_timeout_seconds.map(Duration::from_secs),
                protocol: self.protocol.into(),
            },
            ready: self.ready,
            not_ready: self.not_ready,
            cluster_ip: self.cluster_ip,
            activators: self.activators,
            probe_optimisation: self.probe_optimisation,
        }
    }
}

/// What the poller last saw of the file.
#[derive(Default)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
    /// The mtime was too recent to rule out an unseen same-tick write.
    racy: bool,
    /// The bytes last read, parsed or not (so a broken edit is reported once).
    contents: Option<Vec<u8>>,
}

/// Revisions from a JSON file (or set by hand), published as [`Snapshot`]s.
pub struct StaticFileSource {
    path: Option<PathBuf>,
    tx: watch::Sender<Snapshot>,
    seen: Mutex<Seen>,
}

impl StaticFileSource {
    /// Reads and validates `path`.
    pub fn load(path: impl Into<PathBuf>) -> Result<StaticFileSource, StaticSourceError> {
        let source = StaticFileSource {
            path: Some(path.into()),
            tx: watch::Sender::new(Snapshot::default()),
            seen: Mutex::new(Seen::default()),
        };
        source.reload()?;
        Ok(source)
    }

    /// A source with no file behind it, starting at `snapshot`.
    pub fn from_snapshot(snapshot: Snapshot) -> StaticFileSource {
        StaticFileSource {
            path: None,
            tx: watch::Sender::new(snapshot),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The file read, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Snapshot {
        self.tx.borrow().clone()
    }

    /// Publishes `snapshot` (subscribers are woken only if it differs).
    pub fn set(&self, snapshot: Snapshot) {
        self.tx.send_if_modified(|current| {
            if **current == *snapshot {
                return false;
            }
            *current = snapshot;
            true
        });
    }

    /// Publishes the current revisions as changed by `edit`.
    pub fn modify(&self, edit: impl FnOnce(&mut BTreeMap<RevisionKey, RevisionState>)) {
        let mut revisions = (*self.snapshot()).clone();
        edit(&mut revisions);
        self.set(Arc::new(revisions));
    }

    /// Re-reads the file if it may have changed and publishes what it lists.
    /// Returns whether a new snapshot was published. On error nothing changes.
    pub fn reload(&self) -> Result<bool, StaticSourceError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let read_err = |source| StaticSourceError::Read {
            path: path.clone(),
            source,
        };
        let mut seen = self.seen.lock();
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let modified = meta.modified().ok();
        if seen.contents.is_some()
            && !seen.racy
            && seen.modified == modified
            && seen.len == meta.len()
        {
            return Ok(false);
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        seen.modified = modified;
        seen.len = meta.len();
        seen.racy = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < RACY_WINDOW);
        if seen.contents.as_deref() == Some(&bytes[..]) {
            return Ok(false);
        }
        seen.contents = Some(bytes);
        let revisions = parse(path, seen.contents.as_deref().unwrap_or_default())?;
        let before = self.tx.borrow().clone();
        self.set(Arc::new(revisions));
        Ok(!Arc::ptr_eq(&before, &self.tx.borrow()))
    }

    /// Polls the file every `interval` until the source is dropped. Errors are
    /// logged and the previous snapshot kept. A source without a file has
    /// nothing to poll: the task ends at once.
    pub fn spawn_reload(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let has_file = self.path.is_some();
        tokio::spawn(async move {
            if !has_file {
                return;
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            // The same failure (a file being rewritten, a missing file) is
            // reported once, not at every poll.
            let mut last_error = None;
            loop {
                ticker.tick().await;
                let Some(source) = weak.upgrade() else {
                    return;
                };
                // File I/O blocks; keep it off the runtime's worker threads.
                let result = tokio::task::spawn_blocking(move || source.reload()).await;
                match result {
                    Ok(Ok(published)) => {
                        if published {
                            tracing::info!("revision file reloaded");
                        }
                        last_error = None;
                    }
                    Ok(Err(error)) => {
                        let text = error.to_string();
                        if last_error.as_ref() != Some(&text) {
                            tracing::warn!(error = %text, "keeping the previous revisions");
                            last_error = Some(text);
                        }
                    }
                    Err(join) => tracing::error!(error = %join, "revision file reload failed"),
                }
            }
        })
    }
}

impl RevisionSource for StaticFileSource {
    fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests;
