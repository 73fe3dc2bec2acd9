use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "activator-static-{}-{}.json",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = TempFile(path);
        file.write(contents);
        file
    }

    /// Replaces the contents the way editors and `kubectl cp` do: write a
    /// sibling, then rename it over the file.
    fn write(&self, contents: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const FULL: &str = r#"{"revisions": [{"namespace": "default", "name": "hello-00001",
  "containerConcurrency": 10, "timeoutSeconds": 120, "responseStartTimeoutSeconds": 5,
  "idleTimeoutSeconds": null, "protocol": "h2c", "ready": ["127.0.0.1:8012", "[::1]:8013"],
  "notReady": ["10.0.0.2:8012"], "clusterIP": "10.96.0.7:80",
  "activators": ["10.1.0.1", "10.1.0.2"], "probeOptimisation": false}]}"#;

fn key(name: &str) -> RevisionKey {
    RevisionKey::new("default", name)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn err_text(contents: &str) -> (String, PathBuf) {
    let file = TempFile::new(contents);
    let err = StaticFileSource::load(&file.0)
        .err()
        .expect("the file is rejected");
    (err.to_string(), file.0.clone())
}

#[test]
fn loads_every_field() {
    let file = TempFile::new(FULL);
    let source = StaticFileSource::load(&file.0).unwrap();
    let snapshot = source.snapshot();
    assert_eq!(snapshot.len(), 1);
    let state = &snapshot[&key("hello-00001")];
    assert_eq!(
        state.revision,
        Revision {
            key: key("hello-00001"),
            service: String::new(),
            configuration: String::new(),
            container_concurrency: 10,
            timeout: Duration::from_secs(120),
            response_start_timeout: Some(Duration::from_secs(5)),
            idle_timeout: None,
            protocol: Protocol::H2c,
        }
    );
    assert_eq!(state.ready, strings(&["127.0.0.1:8012", "[::1]:8013"]));
    assert_eq!(state.not_ready, strings(&["10.0.0.2:8012"]));
    assert_eq!(state.cluster_ip.as_deref(), Some("10.96.0.7:80"));
    assert_eq!(state.activators, strings(&["10.1.0.1", "10.1.0.2"]));
    assert!(!state.probe_optimisation);
    assert_eq!(source.path(), Some(file.0.as_path()));
    assert_eq!(*source.subscribe().borrow(), snapshot);
}

#[test]
fn omitted_fields_take_defaults() {
    let file = TempFile::new(
        r#"{"revisions": [{"namespace": "ns", "name": "a", "timeoutSeconds": null}, {"namespace": "ns", "name": "b"}]}"#,
    );
    let snapshot = StaticFileSource::load(&file.0).unwrap().snapshot();
    for name in ["a", "b"] {
        let state = &snapshot[&RevisionKey::new("ns", name)];
        assert_eq!(state.revision.container_concurrency, 0);
        assert_eq!(state.revision.timeout, Duration::from_secs(300));
        assert_eq!(state.revision.response_start_timeout, None);
        assert_eq!(state.revision.idle_timeout, None);
        assert_eq!(state.revision.protocol, Protocol::Http1);
        assert!(state.ready.is_empty() && state.not_ready.is_empty());
        assert!(state.activators.is_empty());
        assert_eq!(state.cluster_ip, None);
        assert!(state.probe_optimisation);
    }
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let rev = r#""namespace": "default", "name": "hello""#;
    let cases: Vec<(String, String)> = vec![
        (
            "{".into(),
            "EOF while parsing an object at line 1 column 1".into(),
        ),
        (
            r#"{"revision": []}"#.into(),
            "unknown field `revision`".into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "notready": []}}]}}"#),
            "unknown field `notready`".into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "protocol": "http2"}}]}}"#),
            "unknown variant `http2`, expected `http1` or `h2c`".into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "containerConcurrency": -1}}]}}"#),
            "invalid value: integer `-1`, expected u32".into(),
        ),
        (
            r#"{"revisions": [{"namespace": "", "name": "x"}]}"#.into(),
            "revisions[0] (/x): namespace is empty".into(),
        ),
        (
            r#"{"revisions": [{"namespace": "ns", "name": ""}]}"#.into(),
            "revisions[0] (ns/): name is empty".into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}}}, {{{rev}}}]}}"#),
            "revisions[1] (default/hello): listed more than once".into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "ready": ["10.0.0.1"]}}]}}"#),
            r#"revisions[0] (default/hello): ready: "10.0.0.1" is not a host:port address"#.into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "notReady": ["::1:80"]}}]}}"#),
            r#"notReady: "::1:80" is not a host:port address"#.into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "clusterIP": "10.96.0.1:http"}}]}}"#),
            r#"clusterIP: "10.96.0.1:http" is not a host:port address"#.into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "ready": ["a:1"], "notReady": ["a:1"]}}]}}"#),
            r#""a:1" is listed in both ready and notReady"#.into(),
        ),
        (
            format!(r#"{{"revisions": [{{{rev}, "activators": ["10.0.0.1:8012"]}}]}}"#),
            r#"activators: "10.0.0.1:8012" is not an IP address"#.into(),
        ),
    ];
    for (contents, want) in cases {
        let (text, path) = err_text(&contents);
        let prefix = format!("revision file {}: ", path.display());
        assert!(
            text.starts_with(&prefix),
            "{text:?} should start with {prefix:?}"
        );
        assert!(
            text.contains(&want),
            "{contents}\n  gave {text:?}\n  want {want:?}"
        );
    }
    let missing = std::env::temp_dir().join("activator-static-does-not-exist.json");
    let text = StaticFileSource::load(&missing).err().unwrap().to_string();
    assert!(
        text.starts_with(&format!(
            "revision file {}: cannot read it: ",
            missing.display()
        )),
        "{text}"
    );
}

#[test]
fn accepts_hostnames_and_bracketed_ipv6() {
    for good in [
        "localhost:8080",
        "[::1]:80",
        "10.0.0.1:0",
        "pod.ns.svc:8012",
    ] {
        assert!(is_host_port(good), "{good}");
    }
    for bad in [
        "",
        ":80",
        "host:",
        "host:99999",
        "[::1:80",
        "::1:80",
        "[nothost]:80",
        "a]:1",
    ] {
        assert!(!is_host_port(bad), "{bad}");
    }
}

#[test]
fn set_and_modify_publish_only_changes() {
    let source = StaticFileSource::from_snapshot(Snapshot::default());
    let mut rx = source.subscribe();
    assert!(source.path().is_none());
    assert!(!source.reload().unwrap(), "no file, nothing to reload");

    let file = TempFile::new(FULL);
    let loaded = StaticFileSource::load(&file.0).unwrap().snapshot();
    source.set(loaded.clone());
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), loaded);

    source.set(Arc::new((*loaded).clone()));
    assert!(!rx.has_changed().unwrap(), "an equal snapshot wakes nobody");

    source.modify(|revisions| {
        revisions
            .get_mut(&key("hello-00001"))
            .unwrap()
            .ready
            .clear();
    });
    assert!(rx.has_changed().unwrap());
    assert!(rx.borrow_and_update()[&key("hello-00001")].ready.is_empty());
}

#[test]
fn reload_follows_edits_and_keeps_the_last_good_snapshot() {
    let file = TempFile::new(r#"{"revisions": [{"namespace": "ns", "name": "a"}]}"#);
    let source = StaticFileSource::load(&file.0).unwrap();
    assert!(!source.reload().unwrap(), "unchanged file");

    file.write(r#"{"revisions": [{"namespace": "ns", "name": "a", "ready": ["10.0.0.1:8012"]}]}"#);
    assert!(source.reload().unwrap());
    let good = source.snapshot();
    assert_eq!(
        good[&RevisionKey::new("ns", "a")].ready,
        strings(&["10.0.0.1:8012"])
    );

    file.write(r#"{"revisions": [{"namespace": "ns", "name": "a", "ready": ["#);
    assert!(matches!(
        source.reload(),
        Err(StaticSourceError::Parse { .. })
    ));
    assert!(
        Arc::ptr_eq(&source.snapshot(), &good),
        "the broken edit changes nothing"
    );
    assert!(
        !source.reload().unwrap(),
        "the same broken contents are not reported twice"
    );

    // Same bytes rewritten: a fresh mtime, nothing to publish.
    file.write(r#"{"revisions": [{"namespace": "ns", "name": "a", "ready": ["10.0.0.1:8012"]}]}"#);
    assert!(!source.reload().unwrap());

    std::fs::remove_file(&file.0).unwrap();
    assert!(matches!(
        source.reload(),
        Err(StaticSourceError::Read { .. })
    ));
    assert!(Arc::ptr_eq(&source.snapshot(), &good));
}

#[tokio::test]
async fn spawn_reload_publishes_changes_and_survives_broken_edits() {
    let file = TempFile::new(r#"{"revisions": []}"#);
    let source = Arc::new(StaticFileSource::load(&file.0).unwrap());
    let mut rx = source.subscribe();
    rx.borrow_and_update();
    let task = source.spawn_reload(Duration::from_millis(10));

    file.write(r#"{"revisions": [{"namespace": "ns", "name": "a"}]}"#);
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the edit is picked up")
        .unwrap();
    assert!(
        rx.borrow_and_update()
            .contains_key(&RevisionKey::new("ns", "a"))
    );

    file.write("not json");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !rx.has_changed().unwrap(),
        "a broken edit publishes nothing"
    );
    assert!(source.snapshot().contains_key(&RevisionKey::new("ns", "a")));

    file.write(r#"{"revisions": [{"namespace": "ns", "name": "b"}]}"#);
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the fixed file is picked up")
        .unwrap();
    assert!(
        rx.borrow_and_update()
            .contains_key(&RevisionKey::new("ns", "b"))
    );

    // The poller holds no strong reference: dropping the source ends it.
    drop(source);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the poller stops with its source")
        .unwrap();
}

#[tokio::test]
async fn spawn_reload_without_a_file_ends_at_once() {
    let source = Arc::new(StaticFileSource::from_snapshot(Snapshot::default()));
    tokio::time::timeout(
        Duration::from_secs(1),
        source.spawn_reload(Duration::from_millis(1)),
    )
    .await
    .unwrap()
    .unwrap();
}
