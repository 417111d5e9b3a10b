//! The pod garbage collector (run with a 1 s quarantine): pods bound to nodes that do not
//! exist are removed once the quarantine ends, so a namespace holding one can finish
//! deleting; terminated pods beyond the threshold are removed oldest first.

use std::time::Duration;

use controllers::podgc::{self, Config};
use controllers::runtime::informers::Informers;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

/// Aborts a spawned task when the test ends, pass or fail.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn start_podgc(c: &Cluster, terminated_pod_threshold: usize) -> AbortOnDrop {
    let config = Config {
        quarantine: Duration::from_secs(1),
        terminated_pod_threshold,
        period: Duration::from_millis(200),
    };
    let informers = Informers::new(c.client.clone());
    AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = podgc::run_with(&informers, config).await {
            eprintln!("podgc ended: {e}");
        }
    }))
}

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_a_node_that_does_not_exist_no_longer_blocks_its_namespaces_deletion() {
    let c = Cluster::start("podgc", &["namespace"], 0).await;
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "live"}})).unwrap();
    Api::<Node>::all(c.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    for p in [pod("on-gone", Some("gone")), pod("on-live", Some("live"))] {
        c.api::<Pod>()
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }
    let _gc = start_podgc(&c, 0);
    eventually("the pod on the missing node removed", || async {
        match c.api::<Pod>().get_opt("on-gone").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        c.api::<Pod>().get_opt("on-live").await.unwrap().is_some(),
        "a pod on an existing node stays"
    );

    // The namespace controller deletes on-live gracefully: bound to a node whose kubelet
    // never finishes, it stays Terminating until that node is deleted too.
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    namespaces
        .delete(&c.ns, &DeleteParams::default())
        .await
        .unwrap();
    Api::<Node>::all(c.client.clone())
        .delete("live", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the namespace deleted", || async {
        match namespaces.get_opt(&c.ns).await {
            Ok(None) => Ok(()),
            Ok(Some(ns)) => Err(format!("{:?}", ns.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_pods_beyond_the_threshold_are_removed_oldest_first() {
    let c = Cluster::start("podgcthreshold", &[], 0).await;
    let pods = c.api::<Pod>();
    for name in ["done-1", "done-2", "done-3", "running"] {
        pods.create(&PostParams::default(), &pod(name, None))
            .await
            .unwrap();
        let phase = if name == "running" {
            "Running"
        } else {
            "Succeeded"
        };
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        )
        .await
        .unwrap();
        // Creation times have one-second resolution: make the order unambiguous.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let _gc = start_podgc(&c, 2);
    eventually("one terminated pod removed", || async {
        let left: Vec<String> = c.live_pods().await.iter().map(|p| p.name_any()).collect();
        (left == ["done-2", "done-3", "running"])
            .then_some(())
            .ok_or(format!("{left:?}"))
    })
    .await;
}
