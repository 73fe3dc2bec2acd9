//! The private Service's ClusterIP: upstream's `revisionWatcher.getDest`. The
//! activator falls back to it when a mesh hides the pods (spec §3.6).

use k8s_openapi::api::core::v1::Service;

use super::endpoints::{SERVICE_TYPE_LABEL, join_host_port};
use crate::revision::Protocol;

/// The selector of the Service watch: only private Services are ever looked at.
pub fn private_services_selector() -> String {
    format!("{SERVICE_TYPE_LABEL}=Private")
}

/// `clusterIP:port` of the port named after `protocol`; `None` without a
/// ClusterIP (or a headless one) or without that port.
pub fn cluster_ip_dest(service: &Service, protocol: Protocol) -> Option<String> {
    let spec = service.spec.as_ref()?;
    let ip = spec
        .cluster_ip
        .as_deref()
        .filter(|ip| !ip.is_empty() && *ip != "None")?;
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(protocol.port_name()))?;
    Some(join_host_port(ip, port.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_named_after_the_protocol() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-private", "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.7", "ports": [
                {"name": "http", "port": 80, "targetPort": 8012},
                {"name": "http2", "port": 81, "targetPort": 8013},
            ]},
        }))
        .unwrap();
        assert_eq!(
            cluster_ip_dest(&svc, Protocol::Http1).as_deref(),
            Some("10.96.0.7:80")
        );
        assert_eq!(
            cluster_ip_dest(&svc, Protocol::H2c).as_deref(),
            Some("10.96.0.7:81")
        );
        let headless: Service = serde_json::from_value(serde_json::json!({
            "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]},
        }))
        .unwrap();
        assert_eq!(cluster_ip_dest(&headless, Protocol::Http1), None);
    }
}
