//! Addresses from core/v1 Endpoints (spec §5.1 and §3.3): upstream's
//! `endpointsToDests` and `healthyAddresses`. The activator reads Endpoints,
//! never EndpointSlices, as upstream does: the public Endpoints are written by
//! the SKS controller and only exist in that form.

use k8s_openapi::api::core::v1::Endpoints;
use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::revision::Protocol;

/// Label every revision-owned Endpoints and Service carries.
pub const REVISION_LABEL: &str = "serving.knative.dev/revision";
/// Label only private Endpoints carry (copied from the private Service).
pub const REVISION_UID_LABEL: &str = "serving.knative.dev/revisionUID";
/// `Private` or `Public`.
pub const SERVICE_TYPE_LABEL: &str = "networking.internal.knative.dev/serviceType";

/// The selector of the private Endpoints watch: upstream's client-side filter,
/// which is a pure label test.
pub fn private_endpoints_selector() -> String {
    format!("{SERVICE_TYPE_LABEL}=Private,{REVISION_UID_LABEL}")
}

/// The selector of the public Endpoints watch.
pub fn public_endpoints_selector() -> String {
    format!("{SERVICE_TYPE_LABEL}=Public")
}

/// The revision an Endpoints object belongs to, by its label.
pub fn revision_name(endpoints: &Endpoints) -> Option<&str> {
    endpoints
        .metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
        .filter(|name| !name.is_empty())
}

/// `ip:port` with IPv6 bracketed (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Ready (`addresses`) and not-ready (`notReadyAddresses`) destinations on the
/// port named after `protocol`, each sorted and unique.
pub fn dests(endpoints: &Endpoints, protocol: Protocol) -> (Vec<String>, Vec<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    let port_name = protocol.port_name();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.iter().flatten();
        for port in ports.filter(|p| p.name.as_deref() == Some(port_name)) {
            for address in subset.addresses.iter().flatten() {
                ready.insert(join_host_port(&address.ip, port.port));
            }
            for address in subset.not_ready_addresses.iter().flatten() {
                not_ready.insert(join_host_port(&address.ip, port.port));
            }
        }
    }
    (ready.into_iter().collect(), not_ready.into_iter().collect())
}

/// The ready IPs of subsets with a port named after `protocol`: the
/// activators a revision's public Endpoints list (subsetting). Sorted as
/// strings and unique; what is not an IP is skipped.
pub fn activator_ips(endpoints: &Endpoints, protocol: Protocol) -> Vec<String> {
    let port_name = protocol.port_name();
    let mut ips = BTreeSet::new();
    for subset in endpoints.subsets.iter().flatten() {
        let has_port = subset
            .ports
            .iter()
            .flatten()
            .any(|p| p.name.as_deref() == Some(port_name));
        if has_port {
            ips.extend(
                subset
                    .addresses
                    .iter()
                    .flatten()
                    .filter(|a| a.ip.parse::<IpAddr>().is_ok())
                    .map(|a| a.ip.clone()),
            );
        }
    }
    ips.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-private", "namespace": "ns",
                         "labels": {REVISION_LABEL: "r"}},
            "subsets": subsets,
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_on_the_protocols_port() {
        let eps = endpoints(serde_json::json!([
            {"addresses": [{"ip": "10.0.0.2"}, {"ip": "fd00::1"}],
             "notReadyAddresses": [{"ip": "10.0.0.3"}],
             "ports": [{"name": "http", "port": 8012}, {"name": "http-usermetric", "port": 9091}]},
            {"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "http2", "port": 8013}]},
        ]));
        assert_eq!(revision_name(&eps), Some("r"));
        let (ready, not_ready) = dests(&eps, Protocol::Http1);
        assert_eq!(ready, ["10.0.0.2:8012", "[fd00::1]:8012"]);
        assert_eq!(not_ready, ["10.0.0.3:8012"]);
        let (ready, not_ready) = dests(&eps, Protocol::H2c);
        assert_eq!(ready, ["10.0.0.9:8013"]);
        assert!(not_ready.is_empty());
    }

    #[test]
    fn activator_ips_sort_as_strings() {
        let eps = endpoints(serde_json::json!([
            {"addresses": [{"ip": "10.0.0.9"}, {"ip": "10.0.0.10"}],
             "notReadyAddresses": [{"ip": "10.0.0.11"}],
             "ports": [{"name": "http", "port": 8012}]},
        ]));
        assert_eq!(
            activator_ips(&eps, Protocol::Http1),
            ["10.0.0.10", "10.0.0.9"]
        );
        assert!(activator_ips(&eps, Protocol::H2c).is_empty());
    }
}
