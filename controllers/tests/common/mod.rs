//! What the workload tests (ReplicaSet, Deployment) add to the shared test cluster of
//! `kybern-testkit`: a cluster with the two loops and a stand-in kubelet, and the
//! questions these tests ask of it.

#![allow(dead_code, unused_imports)] // each test binary uses a different part

use std::time::Duration;

pub(crate) use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
pub(crate) use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
pub(crate) use kybern_testkit::fixtures::{
    deployment as deployment_manifest, orphan_pod as orphan, replica_set as replica_set_manifest,
};
pub(crate) use kybern_testkit::{eventually, mark_ready, Cluster};

/// The apiserver, the ReplicaSet and Deployment loops, and a stand-in kubelet that marks
/// every new pod of `ns` Running and Ready (there are no nodes in these tests).
pub(crate) async fn start(ns: &str) -> Cluster {
    Cluster::builder(ns)
        .loops(&["replicaset", "deployment"])
        .ready_pods()
        .start()
        .await
}

pub(crate) async fn wait_rolled_out(c: &Cluster, name: &str, replicas: i32) {
    eventually(
        &format!("{name} to have {replicas} updated, ready, available replicas"),
        || async {
            let d = c
                .api::<Deployment>()
                .get(name)
                .await
                .map_err(|e| e.to_string())?;
            let s = d.status.clone().unwrap_or_default();
            let want = Some(replicas);
            let done = s.observed_generation == d.metadata.generation
                && s.replicas == want
                && s.updated_replicas == want
                && s.ready_replicas == want
                && s.available_replicas == want;
            if done {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await;
}

pub(crate) fn owner_uid(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// Runs the real kubectl against the cluster's namespace: (success, stdout + stderr).
pub(crate) async fn kubectl(c: &Cluster, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::from(c.kubectl_in_namespace().command())
        .args(args)
        .output()
        .await
        .expect("running kubectl (apt-get install kubectl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The image of a ReplicaSet's first container.
pub(crate) fn image_of(rs: &ReplicaSet) -> Option<String> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// The name of the ReplicaSet whose pods run `image`.
pub(crate) async fn replica_set_of_image(c: &Cluster, image: &str) -> String {
    let rses = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    rses.iter()
        .find(|rs| image_of(rs).as_deref() == Some(image))
        .map(|rs| rs.name_any())
        .unwrap_or_else(|| panic!("no ReplicaSet runs {image}"))
}

/// (image, spec.replicas, revision) of every ReplicaSet, sorted by revision.
pub(crate) async fn replica_set_summary(c: &Cluster) -> Vec<(String, i32, i64)> {
    let rses = c
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut out: Vec<(String, i32, i64)> = rses
        .iter()
        .map(|rs| {
            let revision = rs
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            (
                image_of(rs).unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
                revision,
            )
        })
        .collect();
    out.sort_by_key(|r| r.2);
    out
}

/// Merge-patches an object, retrying 409s: a controller may write in between.
pub(crate) async fn merge_patch<K>(api: &Api<K>, name: &str, body: serde_json::Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..50 {
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(body.clone()))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            result => {
                result.unwrap();
                return;
            }
        }
    }
    panic!("patching {name} kept conflicting");
}
