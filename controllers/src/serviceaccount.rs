//! The service-account controller: every active namespace has a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap carrying the cluster CA, and
//! both come back when deleted (upstream's serviceaccounts-controller and
//! root-ca-cert-publisher, here one loop since both key on the namespace).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::{Context, LoopFuture};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// Upstream's description annotation on the published CA.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ensuring {what} in namespace {namespace}: {source}")]
    Api {
        what: &'static str,
        namespace: String,
        source: kube::Error,
    },
}

impl crate::runtime::retry::ReconcileError for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        if ctx.ca_pem.is_none() {
            tracing::warn!("no cluster CA given: kube-root-ca.crt ConfigMaps are not published");
        }
        let client = ctx.client.clone();
        let to_namespace = |ns: Option<String>| ns.map(|n| ObjectRef::<Namespace>::new(&n));
        let namespaces = ctx.informers.all::<Namespace>();
        namespaces.synced().await;
        Controller::for_shared_stream(namespaces.touched(), namespaces.store())
            .watches(
                Api::<ServiceAccount>::all(client.clone()),
                watcher::Config::default()
                    .fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
                move |sa| to_namespace(sa.namespace()),
            )
            .watches(
                Api::<ConfigMap>::all(client),
                watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
                move |cm| to_namespace(cm.namespace()),
            )
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                ctx,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "serviceaccount reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

#[tracing::instrument(skip_all, fields(key = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if ns.metadata.deletion_timestamp.is_some() {
        // The apiserver refuses new content in a terminating namespace anyway.
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let err = |what| {
        let namespace = name.clone();
        move |source| Error::Api {
            what,
            namespace,
            source,
        }
    };
    let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name);
    if accounts
        .get_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(err("ServiceAccount default"))?
        .is_none()
    {
        ignore_conflicts(
            accounts
                .create(&PostParams::default(), &default_service_account())
                .await,
        )
        .map_err(err("ServiceAccount default"))?;
        tracing::info!("created ServiceAccount default");
    }
    if let Some(ca) = &ctx.ca_pem {
        let maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &name);
        let desired = root_ca_configmap(ca);
        match maps
            .get_opt(ROOT_CA_CONFIGMAP)
            .await
            .map_err(err("ConfigMap kube-root-ca.crt"))?
        {
            None => {
                ignore_conflicts(maps.create(&PostParams::default(), &desired).await)
                    .map_err(err("ConfigMap kube-root-ca.crt"))?;
                tracing::info!("published kube-root-ca.crt");
            }
            Some(existing) if needs_update(&existing, ca) => {
                let mut updated = existing.clone();
                updated.data = desired.data;
                updated.metadata.annotations = desired.metadata.annotations;
                // Replace keeps the resourceVersion we read: a concurrent change gets a 409 and a retry.
                maps.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &updated)
                    .await
                    .map_err(err("ConfigMap kube-root-ca.crt"))?;
                tracing::info!("updated kube-root-ca.crt");
            }
            Some(_) => {}
        }
    }
    Ok(Action::await_change())
}

/// A create that lost a race to another writer (409 AlreadyExists) or found the
/// namespace terminating (403) has nothing left to do.
fn ignore_conflicts<T>(
    r: std::result::Result<T, kube::Error>,
) -> std::result::Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 403 && s.reason == "Forbidden") => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub fn default_service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn root_ca_configmap(ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CA_CONFIGMAP.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            ROOT_CA_KEY.to_string(),
            ca_pem.to_string(),
        )])),
        ..Default::default()
    }
}

/// Whether a published CA differs from the cluster's (edited, or the CA rotated).
pub fn needs_update(existing: &ConfigMap, ca_pem: &str) -> bool {
    let data = existing.data.as_ref();
    data.and_then(|d| d.get(ROOT_CA_KEY)).map(String::as_str) != Some(ca_pem)
        || data.is_some_and(|d| d.len() != 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_configmap_carries_the_ca_under_ca_crt() {
        let cm = root_ca_configmap("PEM");
        assert_eq!(cm.metadata.name.as_deref(), Some("kube-root-ca.crt"));
        assert_eq!(
            cm.data.unwrap().get("ca.crt").map(String::as_str),
            Some("PEM")
        );
    }

    #[test]
    fn a_configmap_is_updated_only_when_its_data_differs_from_the_ca() {
        let with = |data: &[(&str, &str)]| ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        let cases = [
            ("same_ca", with(&[("ca.crt", "PEM")]), false),
            ("other_ca", with(&[("ca.crt", "OLD")]), true),
            ("extra_key", with(&[("ca.crt", "PEM"), ("x", "y")]), true),
            ("no_data", ConfigMap::default(), true),
        ];
        for (name, cm, want) in cases {
            assert_eq!(needs_update(&cm, "PEM"), want, "{name}");
        }
    }
}
