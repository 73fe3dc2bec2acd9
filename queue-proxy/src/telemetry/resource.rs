//! The OTel resource every span and metric carries (spec §8b): who is
//! reporting, in Kubernetes and Knative terms.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// What the resource is built from; empty strings are left out.
#[derive(Debug, Clone, Default)]
pub struct ResourceInfo {
    /// `k8s.container.name` (`queue-proxy`, `activator`).
    pub container: String,
    /// `k8s.namespace.name`.
    pub namespace: String,
    /// `k8s.pod.name` and `service.instance.id`.
    pub pod: String,
    /// `kn.service.name`.
    pub service: String,
    /// `kn.configuration.name`.
    pub configuration: String,
    /// `kn.revision.name`.
    pub revision: String,
}

impl ResourceInfo {
    /// `service.name`: the first non-empty of `otel_service_name`
    /// (`OTEL_SERVICE_NAME`), the service, the configuration, the revision,
    /// the pod.
    pub fn service_name(&self, otel_service_name: Option<&str>) -> String {
        [
            otel_service_name.unwrap_or(""),
            &self.service,
            &self.configuration,
            &self.revision,
            &self.pod,
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_owned()
    }

    /// The resource: these attributes over the SDK's defaults.
    pub fn resource(&self, otel_service_name: Option<&str>) -> Resource {
        let mut attributes = Vec::new();
        let mut add = |key: &'static str, value: &str| {
            if !value.is_empty() {
                attributes.push(KeyValue::new(key, value.to_owned()));
            }
        };
        add("k8s.container.name", &self.container);
        add("k8s.namespace.name", &self.namespace);
        add("k8s.pod.name", &self.pod);
        add("service.instance.id", &self.pod);
        add("service.version", env!("CARGO_PKG_VERSION"));
        add("kn.service.name", &self.service);
        add("kn.configuration.name", &self.configuration);
        add("kn.revision.name", &self.revision);
        let mut builder = Resource::builder().with_attributes(attributes);
        let name = self.service_name(otel_service_name);
        if !name.is_empty() {
            builder = builder.with_service_name(name);
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Key;

    #[test]
    fn service_name_order_and_attributes() {
        let info = ResourceInfo {
            container: "queue-proxy".into(),
            namespace: "ns".into(),
            pod: "pod-1".into(),
            revision: "rev-1".into(),
            ..ResourceInfo::default()
        };
        assert_eq!(info.service_name(None), "rev-1");
        assert_eq!(info.service_name(Some("custom")), "custom");
        let r = info.resource(None);
        assert_eq!(r.get(&Key::new("service.name")).unwrap().as_str(), "rev-1");
        assert_eq!(r.get(&Key::new("k8s.pod.name")).unwrap().as_str(), "pod-1");
        assert!(r.get(&Key::new("kn.service.name")).is_none());
    }
}
