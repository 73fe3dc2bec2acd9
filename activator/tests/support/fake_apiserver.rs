//! A fake Kubernetes API server on loopback, speaking the real protocol the
//! activator's client uses: `GET /version`, `get`, `list` (with
//! `labelSelector`) and `?watch=true` streams of newline-delimited JSON watch
//! events with resourceVersions and bookmarks, for the resources the activator
//! reads.
//!
//! Tests change objects with [`FakeApiServer::apply`] / [`FakeApiServer::delete`],
//! and break things the way a real cluster does: [`FakeApiServer::end_watches`]
//! ends watches cleanly (a watch timeout), [`FakeApiServer::drop_watches`]
//! cuts every watch connection mid-stream, [`FakeApiServer::expire`] answers
//! open and future watches from old resourceVersions with `410 Gone`,
//! [`FakeApiServer::set_down`] makes the server refuse every request (an API
//! server restart). Every call is recorded as (verb, resource).

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// One API call: `verb` is `get`, `list` or `watch`; `resource` is the plural
/// (`revisions`, `endpoints`, ...) or, for non-resource URLs, the path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub verb: String,
    pub group: String,
    pub resource: String,
    /// `None` for cluster-wide calls.
    pub namespace: Option<String>,
}

/// The resources this server knows: (group, plural, kind, apiVersion).
const RESOURCES: &[(&str, &str, &str, &str)] = &[
    ("", "configmaps", "ConfigMap", "v1"),
    ("", "endpoints", "Endpoints", "v1"),
    ("", "services", "Service", "v1"),
    ("", "secrets", "Secret", "v1"),
    (
        "serving.knative.dev",
        "revisions",
        "Revision",
        "serving.knative.dev/v1",
    ),
];

fn kind_of(resource: &str) -> (&'static str, &'static str) {
    RESOURCES
        .iter()
        .find(|r| r.1 == resource)
        .map(|r| (r.2, r.3))
        .unwrap_or_else(|| panic!("unknown resource {resource}"))
}

type Key = (String, String, String); // resource, namespace, name

/// An open watch stream.
struct Watch {
    resource: String,
    namespace: Option<String>,
    selector: String,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
}

struct Event {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest_watchable: u64,
    watches: Vec<Watch>,
    calls: Vec<Call>,
    down: bool,
}

/// A TLS acceptor for 127.0.0.1 and the PEM of the CA that signed it.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

/// The fake API server; dropping it stops it.
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    kubeconfig: PathBuf,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.kubeconfig);
        let _ = std::fs::remove_file(self.kubeconfig.with_extension("ca.pem"));
    }
}

impl FakeApiServer {
    /// A plain-HTTP server.
    pub async fn start() -> FakeApiServer {
        FakeApiServer::start_with(false).await
    }

    /// An HTTPS server with a certificate for 127.0.0.1 from a fresh CA,
    /// which the kubeconfig trusts (as a cluster's CA bundle).
    pub async fn start_tls() -> FakeApiServer {
        FakeApiServer::start_with(true).await
    }

    async fn start_with(tls: bool) -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let file = |ext: &str| {
            std::env::temp_dir().join(format!(
                "activator-fake-apiserver-{}-{n}.{ext}",
                std::process::id()
            ))
        };
        let kubeconfig = file("kubeconfig");
        let (acceptor, scheme, ca_line) = if tls {
            let (acceptor, ca_pem) = tls_acceptor();
            let ca_path = kubeconfig.with_extension("ca.pem");
            std::fs::write(&ca_path, ca_pem).unwrap();
            let ca_line = format!("    certificate-authority: {}\n", ca_path.display());
            (Some(acceptor), "https", ca_line)
        } else {
            (None, "http", String::new())
        };
        let state = Arc::new(Mutex::new(State {
            rv: 1000,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { handle(&state, req) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {scheme}://{addr}\n{ca_line}\
                 users:\n- name: activator\n  user:\n    token: fake-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: activator\n\
                 current-context: fake\n"
            ),
        )
        .unwrap();
        FakeApiServer {
            addr,
            state,
            task,
            kubeconfig,
        }
    }

    /// A kubeconfig file pointing at this server.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates or replaces `object` (its `metadata.namespace` and `.name` say
    /// which), with a new resourceVersion, and tells the matching watches.
    pub fn apply(&self, resource: &str, mut object: Value) {
        let (kind, api_version) = kind_of(resource);
        let namespace = object["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let mut state = self.state.lock();
        state.rv += 1;
        let rv = state.rv;
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (resource.to_owned(), namespace, name);
        let existed = state.objects.insert(key, object.clone()).is_some();
        let event_kind = if existed { "MODIFIED" } else { "ADDED" };
        state.publish(Event {
            rv,
            resource: resource.to_owned(),
            kind: event_kind,
            object,
        });
    }

    /// Deletes an object, telling the matching watches.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let mut state = self.state.lock();
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(mut object) = state.objects.remove(&key) else {
            return;
        };
        state.rv += 1;
        let rv = state.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        state.publish(Event {
            rv,
            resource: resource.to_owned(),
            kind: "DELETED",
            object,
        });
    }

    /// Cuts every open watch connection mid-stream.
    pub fn drop_watches(&self) {
        let mut state = self.state.lock();
        for watch in state.watches.drain(..) {
            let _ = watch
                .tx
                .send(Err(std::io::Error::other("connection dropped")));
        }
    }

    /// Ends every open watch cleanly, as an API server does when a watch's
    /// `timeoutSeconds` runs out.
    pub fn end_watches(&self) {
        self.state.lock().watches.clear();
    }

    /// Compacts the history: open watches get a `410 Gone` error event and
    /// end; watches from any resourceVersion seen so far get the same, so
    /// clients must list again.
    pub fn expire(&self) {
        let mut state = self.state.lock();
        state.compact();
        for watch in state.watches.drain(..) {
            let _ = watch.tx.send(Ok(gone_event()));
        }
    }

    /// Sends a bookmark at the current resourceVersion to every watch that
    /// asked for bookmarks.
    pub fn bookmark(&self) {
        let mut state = self.state.lock();
        let rv = state.rv;
        state.watches.retain(|w| {
            if !w.bookmarks {
                return true;
            }
            let (kind, api_version) = kind_of(&w.resource);
            let event = json!({"type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": api_version,
                "metadata": {"resourceVersion": rv.to_string()}}});
            w.tx.send(Ok(line(&event))).is_ok()
        });
    }

    /// While down, every request is refused (the connection is closed without
    /// an answer) and open watches are cut: an API server restart. Coming back
    /// up, its watch cache starts empty, so old resourceVersions are `410`.
    pub fn set_down(&self, down: bool) {
        if down {
            self.drop_watches();
        }
        let mut state = self.state.lock();
        state.down = down;
        if !down {
            state.compact();
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// How many watches are open now.
    pub fn open_watches(&self) -> usize {
        let mut state = self.state.lock();
        state.watches.retain(|w| !w.tx.is_closed());
        state.watches.len()
    }
}

impl State {
    /// Forgets the history: watches from any resourceVersion handed out so
    /// far get 410; the next list hands out a newer one.
    fn compact(&mut self) {
        self.rv += 1;
        self.oldest_watchable = self.rv;
        self.history.clear();
    }

    fn publish(&mut self, event: Event) {
        let text = line(&json!({"type": event.kind, "object": event.object}));
        let namespace = event.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.watches.retain(|w| {
            if !w.matches(&event.resource, &namespace, &event.object) {
                return !w.tx.is_closed();
            }
            w.tx.send(Ok(text.clone())).is_ok()
        });
        self.history.push(event);
    }
}

impl Watch {
    fn matches(&self, resource: &str, namespace: &str, object: &Value) -> bool {
        self.resource == resource
            && self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && selector_matches(&self.selector, object)
    }
}

fn line(value: &Value) -> Bytes {
    let mut text = serde_json::to_vec(value).unwrap();
    text.push(b'\n');
    Bytes::from(text)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn gone_event() -> Bytes {
    line(&json!({"type": "ERROR", "object": status(410, "Expired",
        "too old resource version")}))
}

/// Label selectors as the API server reads them: `k=v`, `k==v`, `k!=v`, `k`,
/// `!k`, joined by commas.
fn selector_matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                label(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once('=') {
                label(k.trim()) == Some(v.trim_start_matches('=').trim())
            } else if let Some(k) = term.strip_prefix('!') {
                label(k.trim()).is_none()
            } else {
                label(term).is_some()
            }
        })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(status_code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status_code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

/// What a request's path names.
struct Target {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (resource, name) = match rest {
        [resource] => ((*resource).to_owned(), None),
        [resource, name] => ((*resource).to_owned(), Some((*name).to_owned())),
        _ => return None,
    };
    Some(Target {
        group,
        resource,
        namespace,
        name,
    })
}

fn handle(
    state: &Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let mut st = state.lock();
    if st.down {
        return Err(std::io::Error::other("API server down"));
    }
    if path == "/version" {
        st.calls.push(Call {
            verb: "get".into(),
            group: String::new(),
            resource: path,
            namespace: None,
        });
        return Ok(full(
            StatusCode::OK,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.1",
                    "gitCommit": "0000000", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
                    "compiler": "gc", "platform": "linux/amd64"}),
        ));
    }
    let Some(target) = parse_path(&path) else {
        return Ok(full(
            StatusCode::NOT_FOUND,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ));
    };
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&target.name, watching) {
        (Some(_), _) => "get",
        (None, true) => "watch",
        (None, false) => "list",
    };
    st.calls.push(Call {
        verb: verb.into(),
        group: target.group.clone(),
        resource: target.resource.clone(),
        namespace: target.namespace.clone(),
    });
    let (kind, api_version) = kind_of(&target.resource);
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let in_scope = |key: &Key, object: &Value| {
        key.0 == target.resource
            && target.namespace.as_deref().is_none_or(|ns| ns == key.1)
            && selector_matches(&selector, object)
    };

    if let Some(name) = &target.name {
        let key = (
            target.resource.clone(),
            target.namespace.clone().unwrap_or_default(),
            name.clone(),
        );
        return Ok(match st.objects.get(&key) {
            Some(object) => full(StatusCode::OK, object),
            None => full(
                StatusCode::NOT_FOUND,
                &status(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", target.resource),
                ),
            ),
        });
    }

    if !watching {
        let items: Vec<Value> = st
            .objects
            .iter()
            .filter(|(k, o)| in_scope(k, o))
            .map(|(_, o)| o.clone())
            .collect();
        return Ok(full(
            StatusCode::OK,
            &json!({"kind": format!("{kind}List"), "apiVersion": api_version,
                    "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
        ));
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(st.rv);
    if from < st.oldest_watchable {
        let _ = tx.send(Ok(gone_event()));
        drop(tx);
    } else {
        for event in st.history.iter().filter(|e| e.rv > from) {
            let namespace = event.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            let key = (event.resource.clone(), namespace.to_owned(), String::new());
            if in_scope(&key, &event.object) {
                let _ = tx.send(Ok(line(
                    &json!({"type": event.kind, "object": event.object}),
                )));
            }
        }
        st.watches.push(Watch {
            resource: target.resource.clone(),
            namespace: target.namespace.clone(),
            selector,
            bookmarks: query.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
            tx,
        });
    }
    let body = StreamBody::new(UnboundedReceiverStream::new(rx).map(|r| r.map(Frame::data)));
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .unwrap())
}
