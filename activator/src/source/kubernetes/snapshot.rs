//! Joins the four caches into a [`Snapshot`]: what upstream's throttler and
//! revision backends read from their listers, per revision.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::endpoints;
use super::revision::KnativeRevision;
use super::services;
use crate::revision::{RevisionKey, private_service_name};
use crate::source::RevisionState;

/// Readers of the caches the watchers fill.
#[derive(Clone)]
pub(super) struct Caches {
    pub(super) revisions: Store<KnativeRevision>,
    pub(super) private_endpoints: Store<Endpoints>,
    pub(super) public_endpoints: Store<Endpoints>,
    pub(super) services: Store<Service>,
}

impl Caches {
    /// Every cached Revision with its endpoints, ClusterIP and activators.
    pub(super) fn build(&self) -> BTreeMap<RevisionKey, RevisionState> {
        let private = by_revision(&self.private_endpoints);
        let public = by_revision(&self.public_endpoints);
        let mut revisions = BTreeMap::new();
        for object in self.revisions.state() {
            let Some(revision) = object.to_revision() else {
                continue;
            };
            let key = revision.key.clone();
            let lookup = (key.namespace.clone(), key.name.clone());
            let (ready, not_ready) = private
                .get(&lookup)
                .map(|eps| endpoints::dests(eps, revision.protocol))
                .unwrap_or_default();
            let service_ref =
                ObjectRef::new(&private_service_name(&key.name)).within(&key.namespace);
            let cluster_ip = self
                .services
                .get(&service_ref)
                .and_then(|svc| services::cluster_ip_dest(&svc, revision.protocol));
            let activators = public
                .get(&lookup)
                .map(|eps| endpoints::activator_ips(eps, revision.protocol))
                .unwrap_or_default();
            let state = RevisionState {
                probe_optimisation: object.probe_optimisation(),
                revision,
                ready,
                not_ready,
                cluster_ip,
                activators,
            };
            revisions.insert(key, state);
        }
        revisions
    }
}

/// Endpoints by (namespace, revision label). Should two claim one revision,
/// the one whose name sorts first wins, so every activator picks the same.
fn by_revision(store: &Store<Endpoints>) -> HashMap<(String, String), Arc<Endpoints>> {
    let mut index: HashMap<(String, String), Arc<Endpoints>> = HashMap::new();
    for eps in store.state() {
        let (Some(namespace), Some(revision)) = (
            eps.metadata.namespace.clone(),
            endpoints::revision_name(&eps),
        ) else {
            continue;
        };
        let key = (namespace, revision.to_owned());
        match index.get(&key) {
            Some(kept) if kept.metadata.name <= eps.metadata.name => {}
            _ => {
                index.insert(key, eps);
            }
        }
    }
    index
}
