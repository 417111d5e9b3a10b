//! The local-path provisioner on simulated nodes, with the scheduler and the
//! StatefulSet loop: claims of the default class bind once their pod is scheduled, to a
//! hostPath volume on that pod's node; deleting a claim deletes its volume (or keeps it
//! Released under Retain); claims of other classes are left alone.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::fixtures::create_from as create;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

// The binder runs beside the provisioner, as in `kybern server`: its protection
// finalizers and static binding must not get in the way of dynamic provisioning.
const LOOPS: &[&str] = &[
    "localpath",
    "persistentvolume-binder",
    "statefulset",
    "scheduler",
];

fn claim_manifest(name: &str, class: Option<&str>) -> serde_json::Value {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn pod_manifest(name: &str, claims: &[&str]) -> serde_json::Value {
    let volumes: Vec<_> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": volumes},
    })
}

/// Waits until the claim is Bound and returns it.
async fn bound_claim(c: &Cluster, name: &str) -> PersistentVolumeClaim {
    let api = c.api::<PersistentVolumeClaim>();
    eventually(&format!("claim {name} Bound"), || async {
        let claim = api.get(name).await.map_err(|e| e.to_string())?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        (phase.as_deref() == Some("Bound") && volume.is_some())
            .then_some(())
            .ok_or(format!("{:?}", claim.status))
    })
    .await;
    api.get(name).await.unwrap()
}

async fn node_of(c: &Cluster, pod: &str) -> String {
    let api = c.api::<Pod>();
    eventually(&format!("pod {pod} scheduled"), || async {
        let p = api.get(pod).await.map_err(|e| e.to_string())?;
        p.spec
            .and_then(|s| s.node_name)
            .map(drop)
            .ok_or("not scheduled".into())
    })
    .await;
    api.get(pod).await.unwrap().spec.unwrap().node_name.unwrap()
}

fn affinity_nodes(pv: &PersistentVolume) -> Vec<String> {
    let spec = pv.spec.as_ref().unwrap();
    let terms = &spec
        .node_affinity
        .as_ref()
        .unwrap()
        .required
        .as_ref()
        .unwrap()
        .node_selector_terms;
    let expr = &terms[0].match_expressions.as_ref().unwrap()[0];
    assert_eq!(
        (expr.key.as_str(), expr.operator.as_str()),
        ("kubernetes.io/hostname", "In")
    );
    expr.values.clone().unwrap_or_default()
}

/// Waits for an event with `reason` about the claim `claim`.
async fn wait_event(c: &Cluster, claim: &str, reason: &str) {
    let events = c.api::<Event>();
    eventually(&format!("a {reason} event on claim {claim}"), || async {
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let about: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(claim))
            .filter_map(|e| e.reason.clone())
            .collect();
        about
            .iter()
            .any(|r| r == reason)
            .then_some(())
            .ok_or(format!("{about:?}"))
    })
    .await;
}

async fn wait_volume_gone(c: &Cluster, name: &str) {
    let pvs = Api::<PersistentVolume>::all(c.client.clone());
    eventually(&format!("volume {name} deleted"), || async {
        match pvs.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(pv) => Err(format!("still there: {:?}", pv.status)),
        }
    })
    .await;
}

#[tokio::test]
async fn statefulset_claims_of_the_default_class_bind_to_a_volume_on_their_pods_node() {
    let c = Cluster::start("lp-sts", LOOPS, 2).await;
    let classes = Api::<StorageClass>::all(c.client.clone());
    eventually("the default class", || async {
        classes
            .get_opt("local-path")
            .await
            .map_err(|e| e.to_string())?
            .map(drop)
            .ok_or("absent".into())
    })
    .await;
    let class = classes.get("local-path").await.unwrap();
    assert_eq!(class.provisioner, "kybern.io/local-path");
    assert_eq!(
        class
            .annotations()
            .get("storageclass.kubernetes.io/is-default-class")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        class.volume_binding_mode.as_deref(),
        Some("WaitForFirstConsumer")
    );
    assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));

    // Claim templates that name no class: they get the default one.
    create(
        &c.api::<StatefulSet>(),
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }],
            },
        }),
    )
    .await;
    let pvs = Api::<PersistentVolume>::all(c.client.clone());
    for ordinal in 0..2 {
        let claim = bound_claim(&c, &format!("data-web-{ordinal}")).await;
        let uid = claim.uid().unwrap();
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(
            spec.storage_class_name.as_deref(),
            Some("local-path"),
            "the default class is written into the claim"
        );
        assert_eq!(
            spec.volume_name.as_deref(),
            Some(format!("pvc-{uid}").as_str())
        );
        assert_eq!(
            claim
                .annotations()
                .get("pv.kubernetes.io/bind-completed")
                .map(String::as_str),
            Some("yes")
        );
        let status = claim.status.as_ref().unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));

        let pv = pvs.get(&format!("pvc-{uid}")).await.unwrap();
        let pv_spec = pv.spec.as_ref().unwrap();
        let host = pv_spec.host_path.as_ref().unwrap();
        assert_eq!(
            host.path,
            format!("/var/lib/kybern/storage/pvc-{uid}_lp-sts_data-web-{ordinal}")
        );
        assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(pv_spec.capacity.as_ref().unwrap()["storage"].0, "1Gi");
        assert_eq!(
            pv_spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(pv_spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(
            pv_spec.claim_ref.as_ref().unwrap().uid.as_deref(),
            Some(uid.as_str())
        );
        assert_eq!(
            pv.annotations()
                .get("pv.kubernetes.io/provisioned-by")
                .map(String::as_str),
            Some("kybern.io/local-path")
        );
        assert_eq!(
            affinity_nodes(&pv),
            vec![node_of(&c, &format!("web-{ordinal}")).await],
            "the volume lives on its pod's node"
        );
        eventually("the volume Bound", || async {
            let pv = pvs
                .get(&format!("pvc-{uid}"))
                .await
                .map_err(|e| e.to_string())?;
            let phase = pv.status.and_then(|s| s.phase);
            (phase.as_deref() == Some("Bound"))
                .then_some(())
                .ok_or(format!("{phase:?}"))
        })
        .await;
    }
}

#[tokio::test]
async fn deleting_a_claim_deletes_its_volume_or_keeps_it_released_under_retain() {
    let c = Cluster::start("lp-delete", LOOPS, 1).await;
    create(
        &Api::<StorageClass>::all(c.client.clone()),
        json!({"metadata": {"name": "keep"}, "provisioner": "kybern.io/local-path", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}),
    )
    .await;
    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("scratch", Some("local-path")),
    )
    .await;
    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("precious", Some("keep")),
    )
    .await;
    create(
        &c.api::<Pod>(),
        pod_manifest("user", &["scratch", "precious"]),
    )
    .await;
    let scratch = bound_claim(&c, "scratch")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let precious = bound_claim(&c, "precious")
        .await
        .spec
        .unwrap()
        .volume_name
        .unwrap();
    let pvs = Api::<PersistentVolume>::all(c.client.clone());
    assert_eq!(
        pvs.get(&scratch)
            .await
            .unwrap()
            .spec
            .unwrap()
            .capacity
            .unwrap()["storage"]
            .0,
        "3Gi"
    );
    assert_eq!(
        pvs.get(&precious)
            .await
            .unwrap()
            .spec
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Retain")
    );

    c.api::<Pod>()
        .delete("user", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    c.api::<PersistentVolumeClaim>()
        .delete("scratch", &DeleteParams::default())
        .await
        .unwrap();
    c.api::<PersistentVolumeClaim>()
        .delete("precious", &DeleteParams::default())
        .await
        .unwrap();
    for reason in [
        "Provisioning",
        "ProvisioningSucceeded",
        "ExternalProvisioning",
    ] {
        wait_event(&c, "scratch", reason).await;
    }
    wait_volume_gone(&c, &scratch).await;
    eventually("the retained volume Released", || async {
        let pv = pvs.get(&precious).await.map_err(|e| e.to_string())?;
        let phase = pv.status.and_then(|s| s.phase);
        (phase.as_deref() == Some("Released"))
            .then_some(())
            .ok_or(format!("{phase:?}"))
    })
    .await;
}

#[tokio::test]
async fn a_claim_of_another_class_stays_pending() {
    let c = Cluster::start("lp-other", LOOPS, 1).await;
    create(
        &Api::<StorageClass>::all(c.client.clone()),
        json!({"metadata": {"name": "ebs"}, "provisioner": "ebs.csi.aws.com", "volumeBindingMode": "WaitForFirstConsumer"}),
    )
    .await;
    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("theirs", Some("ebs")),
    )
    .await;
    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("none", Some("")),
    )
    .await;
    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("ours", None),
    )
    .await;
    // Without a consumer, our claim waits (and says so, as upstream's PV controller does).
    wait_event(&c, "ours", "WaitForFirstConsumer").await;
    let waiting = c.api::<PersistentVolumeClaim>().get("ours").await.unwrap();
    assert_eq!(
        waiting.spec.unwrap().volume_name,
        None,
        "no volume before a consumer is scheduled"
    );
    create(
        &c.api::<Pod>(),
        // Not "none": a claim with no class and no volume is unbound and immediate, so the
        // scheduler would hold the pod back, as upstream's VolumeBinding does.
        pod_manifest("user", &["theirs", "ours"]),
    )
    .await;
    // Once the claim of ours in the same pod is bound the provisioner has seen the pod
    // scheduled: the others would have been handled by then too.
    bound_claim(&c, "ours").await;
    for name in ["theirs", "none"] {
        let claim = c.api::<PersistentVolumeClaim>().get(name).await.unwrap();
        let spec = claim.spec.as_ref().unwrap();
        assert_eq!(spec.volume_name, None, "{name} stays unbound");
        assert_ne!(
            claim.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Bound"),
            "{name}"
        );
        let pv = Api::<PersistentVolume>::all(c.client.clone())
            .get_opt(&format!("pvc-{}", claim.uid().unwrap()))
            .await
            .unwrap();
        assert!(pv.is_none(), "no volume is made for {name}");
    }
    let none = c.api::<PersistentVolumeClaim>().get("none").await.unwrap();
    assert_eq!(
        none.spec.unwrap().storage_class_name.as_deref(),
        Some(""),
        "an explicit empty class is kept"
    );
}

/// A node agent on `node` with the recording runtime and network fakes: pods start (their
/// claims' folders are made on this host, below `root`) without containerd.
fn fake_agent(c: &Cluster, node: &str, dir: &std::path::Path) -> tokio::task::JoinHandle<()> {
    use agent::runtime::{fake::FakeRuntime, ImageConfig, ImageInfo};
    let runtime = std::sync::Arc::new(FakeRuntime::new());
    runtime.add_image(ImageInfo {
        name: "busybox".into(),
        digest: "sha256:00".into(),
        config: ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    });
    let config = agent::kubelet::AgentConfig {
        node_name: node.into(),
        node_ip: "127.0.0.1".parse().unwrap(),
        data_dir: dir.join("agent"),
        labels: Default::default(),
        dns: Default::default(),
        net: Default::default(),
        runtime_version: "fake://1".into(),
        backoff: agent::pods::BackoffConfig {
            initial: std::time::Duration::from_millis(400),
            max: std::time::Duration::from_millis(1600),
        },
        static_pods_dir: None,
        eviction: Default::default(),
        local_path_root: dir.join("storage"),
        node_api: None,
        io: None,
    };
    let client = c.client.clone();
    tokio::spawn(async move {
        let network = std::sync::Arc::new(agent::network::fake::FakeNetwork::new());
        if let Err(e) = agent::kubelet::run(client, config, runtime, network).await {
            eprintln!("the agent stopped: {e}");
        }
    })
}

#[tokio::test]
async fn deleting_a_claim_removes_its_folder_on_the_node_and_then_its_volume() {
    let c = Cluster::start("lp-folder", &["persistentvolume-binder"], 0).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    // The provisioner as `kybern up` runs it: volumes below the node's local-path root.
    let informers = controllers::runtime::informers::Informers::new(c.client.clone());
    let config = controllers::localpath::Config {
        base_path: root.display().to_string(),
    };
    let provisioner =
        tokio::spawn(async move { controllers::localpath::run_with(&informers, config).await });
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(
        json!({"metadata": {"name": "lp-node"}, "spec": {"podCIDR": "10.42.9.0/24"}}),
    )
    .unwrap();
    Api::all(c.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let agent = fake_agent(&c, "lp-node", dir.path());

    create(
        &c.api::<PersistentVolumeClaim>(),
        claim_manifest("data", None),
    )
    .await;
    let mut pod = pod_manifest("user", &["data"]);
    pod["spec"]["nodeName"] = json!("lp-node");
    create(&c.api::<Pod>(), pod).await;
    let claim = bound_claim(&c, "data").await;
    let volume = claim.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(c.client.clone())
        .get(&volume)
        .await
        .unwrap();
    let folder = std::path::PathBuf::from(&pv.spec.unwrap().host_path.unwrap().path);
    assert!(folder.starts_with(&root), "{folder:?} is below {root:?}");
    eventually("the claim's folder made on the node", || async {
        folder.is_dir().then_some(()).ok_or("not yet".to_string())
    })
    .await;
    std::fs::write(folder.join("data.txt"), "written by the pod").unwrap();

    c.api::<Pod>()
        .delete("user", &DeleteParams::default())
        .await
        .unwrap();
    c.api::<PersistentVolumeClaim>()
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    wait_volume_gone(&c, &volume).await;
    assert!(!folder.exists(), "{folder:?} removed with the volume");
    assert!(root.is_dir(), "the local-path root itself stays");
    agent.abort();
    provisioner.abort();
}
