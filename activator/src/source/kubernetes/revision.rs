//! The `serving.knative.dev/v1` Revision, reduced to the fields the activator
//! reads (spec §11): upstream's typed informer decodes the whole object, here
//! serde skips everything else, so a Revision costs a few hundred bytes in the
//! cache instead of its full pod spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::Duration;

use crate::revision::{Protocol, Revision, RevisionKey};

/// `spec.timeoutSeconds` when absent: the webhook's default (upstream would
/// crash on a nil value; spec Appendix A).
const DEFAULT_TIMEOUT_SECONDS: u64 = 300;

/// A Knative Revision as the activator sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnativeRevision {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RevisionSpec,
}

/// The part of `spec` the activator reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSpec {
    #[serde(default)]
    pub container_concurrency: Option<i64>,
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    #[serde(default)]
    pub response_start_timeout_seconds: Option<i64>,
    #[serde(default)]
    pub idle_timeout_seconds: Option<i64>,
    #[serde(default)]
    pub containers: Vec<Container>,
}

/// A container of the revision's pod spec, reduced to ports and probes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    /// Only its presence matters.
    #[serde(default)]
    pub startup_probe: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
}

/// A readiness probe: only whether it is an `exec` probe matters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Probe {
    #[serde(default)]
    pub exec: Option<serde_json::Value>,
}

impl kube::Resource for KnativeRevision {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Revision")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("serving.knative.dev")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("revisions")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl KnativeRevision {
    /// Upstream's `GetContainer`: the only container, else the first one with
    /// ports.
    fn serving_container(&self) -> Option<&Container> {
        match self.spec.containers.as_slice() {
            [only] => Some(only),
            all => all.iter().find(|c| !c.ports.is_empty()),
        }
    }

    /// Upstream's `GetProtocol`: the serving container's first port named
    /// `h2c` makes the revision HTTP/2.
    pub fn protocol(&self) -> Protocol {
        let first_port = self
            .serving_container()
            .and_then(|c| c.ports.first())
            .and_then(|p| p.name.as_deref());
        match first_port {
            Some("h2c") => Protocol::H2c,
            _ => Protocol::Http1,
        }
    }

    /// Spec §5.1: probing not-yet-ready pods is off when the serving
    /// container's readiness probe is `exec`, or any container has a startup
    /// probe (sidecars' readiness probes are not looked at, as upstream).
    pub fn probe_optimisation(&self) -> bool {
        let exec_readiness = self
            .serving_container()
            .and_then(|c| c.readiness_probe.as_ref())
            .is_some_and(|p| p.exec.is_some());
        let startup = self
            .spec
            .containers
            .iter()
            .any(|c| c.startup_probe.is_some());
        !exec_readiness && !startup
    }

    /// The data path's view; `None` without a namespace or name.
    pub fn to_revision(&self) -> Option<Revision> {
        let namespace = self.metadata.namespace.clone()?;
        let name = self.metadata.name.clone()?;
        let seconds = |v: Option<i64>| v.and_then(|s| u64::try_from(s).ok());
        let spec = &self.spec;
        let label = |key: &str| {
            self.metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(key))
                .cloned()
                .unwrap_or_default()
        };
        Some(Revision {
            key: RevisionKey::new(namespace, name),
            service: label("serving.knative.dev/service"),
            configuration: label("serving.knative.dev/configuration"),
            container_concurrency: spec
                .container_concurrency
                .and_then(|cc| u32::try_from(cc).ok())
                .unwrap_or(0),
            timeout: Duration::from_secs(
                seconds(spec.timeout_seconds).unwrap_or(DEFAULT_TIMEOUT_SECONDS),
            ),
            response_start_timeout: seconds(spec.response_start_timeout_seconds)
                .map(Duration::from_secs),
            idle_timeout: seconds(spec.idle_timeout_seconds).map(Duration::from_secs),
            protocol: self.protocol(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: serde_json::Value) -> KnativeRevision {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": "hello-00001", "namespace": "default",
                "labels": {"serving.knative.dev/service": "hello",
                    "serving.knative.dev/configuration": "hello-config"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn spec_fields_and_defaults() {
        let rev = parse(serde_json::json!({
            "containerConcurrency": 10, "responseStartTimeoutSeconds": 5,
            "containers": [{"image": "x", "ports": [{"name": "h2c", "containerPort": 8080}]}],
        }));
        let r = rev.to_revision().unwrap();
        assert_eq!(r.container_concurrency, 10);
        assert_eq!(r.timeout, Duration::from_secs(300));
        assert_eq!(r.response_start_timeout, Some(Duration::from_secs(5)));
        assert_eq!(r.idle_timeout, None);
        assert_eq!(r.protocol, Protocol::H2c);
        assert_eq!(
            (r.service.as_str(), r.configuration.as_str()),
            ("hello", "hello-config")
        );
        assert!(rev.probe_optimisation());
    }

    #[test]
    fn serving_container_is_the_first_with_ports() {
        let rev = parse(serde_json::json!({"containers": [
            {"name": "sidecar", "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "app", "ports": [{"containerPort": 8080}], "readinessProbe": {"httpGet": {}}},
        ]}));
        assert_eq!(rev.protocol(), Protocol::Http1);
        // A sidecar's exec readiness probe does not count (as upstream).
        assert!(rev.probe_optimisation());
    }

    #[test]
    fn exec_readiness_or_any_startup_probe_disable_probe_optimisation() {
        let exec = parse(serde_json::json!({"containers": [
            {"readinessProbe": {"exec": {"command": ["true"]}}},
        ]}));
        assert!(!exec.probe_optimisation());
        let sidecar_startup = parse(serde_json::json!({"containers": [
            {"ports": [{"containerPort": 8080}]},
            {"name": "sidecar", "startupProbe": {"tcpSocket": {"port": 1}}},
        ]}));
        assert!(!sidecar_startup.probe_optimisation());
    }
}
