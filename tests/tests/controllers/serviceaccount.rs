//! The serviceaccount controller: every namespace gets a `default` ServiceAccount and
//! the `kube-root-ca.crt` ConfigMap, and gets them back when they are deleted.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::{eventually, Cluster};

#[tokio::test]
async fn a_new_namespace_gets_a_default_service_account_and_the_root_ca() {
    let cluster = Cluster::start(&["serviceaccount"]).await;
    let client = cluster.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "fresh"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "fresh");
    let maps = Api::<ConfigMap>::namespaced(client.clone(), "fresh");
    eventually(
        "ServiceAccount default",
        Duration::from_secs(10),
        || async { accounts.get_opt("default").await.unwrap() },
    )
    .await;
    let ca = eventually(
        "ConfigMap kube-root-ca.crt",
        Duration::from_secs(10),
        || async { maps.get_opt("kube-root-ca.crt").await.unwrap() },
    )
    .await;
    let pki_ca = std::fs::read_to_string(
        cluster
            .api
            .server
            .kubeconfig
            .parent()
            .unwrap()
            .join("pki/ca.crt"),
    )
    .unwrap();
    let published = ca.data.unwrap().remove("ca.crt").expect("a ca.crt key");
    assert_eq!(
        published.trim(),
        pki_ca.trim(),
        "the published CA is the cluster's"
    );

    // Deleted, both come back.
    let first_uid = accounts.get("default").await.unwrap().metadata.uid;
    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    maps.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "ServiceAccount default recreated",
        Duration::from_secs(10),
        || async {
            accounts
                .get_opt("default")
                .await
                .unwrap()
                .filter(|sa| sa.metadata.uid != first_uid)
        },
    )
    .await;
    eventually(
        "ConfigMap kube-root-ca.crt recreated",
        Duration::from_secs(10),
        || async { maps.get_opt("kube-root-ca.crt").await.unwrap() },
    )
    .await;
}

#[tokio::test]
async fn an_edited_root_ca_configmap_is_restored() {
    let cluster = Cluster::start(&["serviceaccount"]).await;
    let maps = Api::<ConfigMap>::namespaced(cluster.client(), "default");
    let mut cm = eventually(
        "kube-root-ca.crt in default",
        Duration::from_secs(10),
        || async { maps.get_opt("kube-root-ca.crt").await.unwrap() },
    )
    .await;
    let original = cm.data.clone();
    cm.data = Some([("ca.crt".to_string(), "tampered".to_string())].into());
    maps.replace("kube-root-ca.crt", &PostParams::default(), &cm)
        .await
        .unwrap();
    eventually("the CA to be restored", Duration::from_secs(10), || async {
        let now = maps.get("kube-root-ca.crt").await.unwrap();
        (now.data == original).then_some(())
    })
    .await;
}
