//! The StatefulSet loop on simulated nodes, as users rely on it: pods made in ordinal
//! order with stable names, hostnames and claims; claims that outlive their pods;
//! scale-down from the highest ordinal; rolling updates with a partition; OnDelete; and
//! `kubectl rollout status statefulset/NAME`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kybern_testkit::{eventually, Cluster};
use serde_json::{json, Value};

/// The local-path provisioner binds the claims of the pods' volumeClaimTemplates: without
/// a provisioner the scheduler holds such pods back, as upstream's VolumeBinding does.
const LOOPS: &[&str] = &["localpath", "statefulset", "scheduler"];

fn manifest(replicas: i32, extra_spec: Value) -> StatefulSet {
    let mut m = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
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
    });
    if let (Some(spec), Some(extra)) = (m["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(m).unwrap()
}

async fn create(c: &Cluster, set: &StatefulSet) {
    c.api::<StatefulSet>()
        .create(&PostParams::default(), set)
        .await
        .unwrap();
}

async fn patch_spec(c: &Cluster, spec: Value) {
    c.api::<StatefulSet>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// Waits until the set's status reports `ready` ready replicas, all updated, for its
/// latest generation.
async fn wait_ready(c: &Cluster, ready: i32) {
    eventually(&format!("{ready} ready, updated replicas"), || async {
        let s = c
            .api::<StatefulSet>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let st = s.status.clone().unwrap_or_default();
        let ok = st.observed_generation == s.metadata.generation
            && st.replicas == ready
            && st.ready_replicas == Some(ready)
            && st.updated_replicas == Some(ready);
        ok.then_some(()).ok_or(format!("{st:?}"))
    })
    .await;
}

async fn pods(c: &Cluster) -> Vec<Pod> {
    let mut pods = c
        .api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    pods.sort_by_key(|p| p.name_any());
    pods
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.labels().get(key).map_or("", String::as_str)
}

/// What a watch on the namespace's pods saw, in the order the apiserver wrote it.
#[derive(Default)]
struct Seen {
    ready: HashMap<String, bool>,
    /// Each pod the first time it appeared, and whether every lower ordinal was Running
    /// and Ready at that moment.
    created: Vec<(String, bool)>,
    /// Each pod the first time it was seen being deleted (or gone).
    deleted: Vec<String>,
    deleted_uids: HashSet<String>,
}

fn ordinal(name: &str) -> i32 {
    name.rsplit_once('-')
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or(-1)
}

fn is_running_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl Seen {
    fn saw(&mut self, pod: &Pod, gone: bool) {
        let name = pod.name_any();
        if !self.ready.contains_key(&name) && !gone {
            let lower_ready =
                (0..ordinal(&name)).all(|o| self.ready.get(&format!("web-{o}")) == Some(&true));
            self.created.push((name.clone(), lower_ready));
        }
        let deleting = gone || pod.metadata.deletion_timestamp.is_some();
        if deleting {
            if self.deleted_uids.insert(pod.uid().unwrap_or_default()) {
                self.deleted.push(name.clone());
            }
            self.ready.remove(&name);
        } else {
            self.ready.insert(name, is_running_ready(pod));
        }
    }
}

/// Records pod events in the test's namespace until dropped.
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

fn record(c: &Cluster) -> Recorder {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    // Backoff: once the apiserver stops, an immediately retried watch would spin and
    // keep the runtime from shutting down.
    let stream = watcher(c.api::<Pod>(), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let mut log = log.lock().unwrap();
            match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => log.saw(&p, false),
                Ok(watcher::Event::Delete(p)) => log.saw(&p, true),
                _ => {}
            }
        }
    });
    Recorder { seen, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_pods_in_ordinal_order_with_stable_identity_and_claims() {
    let c = Cluster::start("sts-ordered", LOOPS, 2).await;
    let seen = record(&c);
    create(&c, &manifest(3, json!({}))).await;
    wait_ready(&c, 3).await;

    let created = seen.lock().created.clone();
    assert_eq!(
        created,
        vec![
            ("web-0".into(), true),
            ("web-1".into(), true),
            ("web-2".into(), true)
        ],
        "each pod is created only after every lower ordinal is Running and Ready"
    );
    let set = c.api::<StatefulSet>().get("web").await.unwrap();
    let status = set.status.unwrap();
    let revision = status.update_revision.clone().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(revision.as_str()));
    for (i, pod) in pods(&c).await.iter().enumerate() {
        let name = format!("web-{i}");
        assert_eq!(pod.name_any(), name);
        assert_eq!(label(pod, "statefulset.kubernetes.io/pod-name"), name);
        assert_eq!(label(pod, "apps.kubernetes.io/pod-index"), i.to_string());
        assert_eq!(label(pod, "controller-revision-hash"), revision);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let claim = spec.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(claim.claim_name, format!("data-{name}"));
    }
    let claims = c
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut names: Vec<String> = claims.iter().map(|p| p.name_any()).collect();
    names.sort();
    assert_eq!(names, vec!["data-web-0", "data-web-1", "data-web-2"]);
    let revisions = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(
        revisions.iter().map(|r| r.name_any()).collect::<Vec<_>>(),
        vec![revision]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_every_pod_without_waiting_for_readiness() {
    let c = Cluster::start("sts-parallel", LOOPS, 2).await;
    let mut set = manifest(3, json!({"podManagementPolicy": "Parallel"}));
    let template = set
        .spec
        .as_mut()
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap();
    // Simulated containers that never become ready: OrderedReady would stop at web-0.
    template.annotations =
        Some([("kybern.io/simulate-ready".to_string(), "false".to_string())].into());
    create(&c, &set).await;
    eventually("all three pods running, none ready", || async {
        let pods = pods(&c).await;
        let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        let running = pods
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        let ok = names == ["web-0", "web-1", "web-2"] && running;
        ok.then_some(()).ok_or(format!("{names:?}"))
    })
    .await;
    assert!(!pods(&c).await.iter().any(is_running_ready));
    let st = c
        .api::<StatefulSet>()
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_eq!(st.ready_replicas.unwrap_or(0), 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_goes_from_the_highest_ordinal_and_claims_outlive_pods() {
    let c = Cluster::start("sts-scale", LOOPS, 2).await;
    create(&c, &manifest(3, json!({}))).await;
    wait_ready(&c, 3).await;
    let claims_api = c.api::<PersistentVolumeClaim>();
    let uid_before = claims_api.get("data-web-2").await.unwrap().uid();

    let seen = record(&c);
    patch_spec(&c, json!({"replicas": 1})).await;
    wait_ready(&c, 1).await;
    eventually("only web-0 left", || async {
        let names: Vec<String> = pods(&c).await.iter().map(|p| p.name_any()).collect();
        (names == ["web-0"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;
    assert_eq!(
        seen.lock().deleted,
        vec!["web-2", "web-1"],
        "highest ordinal first"
    );
    c.wait_described(
        &["statefulset", "web"],
        &[
            "SuccessfulCreate",
            "create Pod web-2 in StatefulSet web successful",
            "SuccessfulDelete",
            "delete Pod web-2 in StatefulSet web successful",
        ],
    )
    .await;
    for name in ["data-web-0", "data-web-1", "data-web-2"] {
        let claim = claims_api.get(name).await.unwrap();
        assert!(
            claim.metadata.deletion_timestamp.is_none(),
            "{name} is kept"
        );
    }

    // Scaling up again brings the same names back onto the same claims.
    patch_spec(&c, json!({"replicas": 3})).await;
    wait_ready(&c, 3).await;
    assert_eq!(
        claims_api.get("data-web-2").await.unwrap().uid(),
        uid_before
    );
    let web2 = c.api::<Pod>().get("web-2").await.unwrap();
    let volumes = web2.spec.unwrap().volumes.unwrap();
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-web-2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_scaled_delete_removes_the_claims_of_scaled_down_pods_only() {
    let c = Cluster::start(
        "sts-retention",
        // The binder takes off the pvc-protection finalizer admission puts on claims.
        &[
            "localpath",
            "persistentvolume-binder",
            "statefulset",
            "scheduler",
            "garbagecollector",
        ],
        2,
    )
    .await;
    let policy = json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"}});
    create(&c, &manifest(2, policy)).await;
    wait_ready(&c, 2).await;
    let claims_api = c.api::<PersistentVolumeClaim>();
    let owners = claims_api
        .get("data-web-1")
        .await
        .unwrap()
        .metadata
        .owner_references;
    assert!(
        owners.unwrap_or_default().is_empty(),
        "a claim in range has no owner"
    );

    patch_spec(&c, json!({"replicas": 1})).await;
    eventually("data-web-1 to go with web-1", || async {
        let names: Vec<String> = claims_api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        (names == ["data-web-0"])
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;
    wait_ready(&c, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_pods_from_the_top_down_to_the_partition() {
    let c = Cluster::start("sts-rolling", LOOPS, 2).await;
    create(
        &c,
        &manifest(
            3,
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
        ),
    )
    .await;
    wait_ready(&c, 3).await;
    let old = c
        .api::<StatefulSet>()
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap()
        .current_revision
        .unwrap();

    let seen = record(&c);
    patch_spec(
        &c,
        json!({"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}),
    )
    .await;
    eventually("web-2 and web-1 updated, web-0 kept", || async {
        let s = c
            .api::<StatefulSet>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let st = s.status.unwrap_or_default();
        let revisions: Vec<String> = pods(&c)
            .await
            .iter()
            .map(|p| label(p, "controller-revision-hash").to_string())
            .collect();
        let new = st.update_revision.clone().unwrap_or_default();
        let ok = st.updated_replicas == Some(2)
            && st.ready_replicas == Some(3)
            && st.current_revision.as_deref() == Some(old.as_str())
            && revisions == [old.clone(), new.clone(), new];
        ok.then_some(()).ok_or(format!("{st:?} pods {revisions:?}"))
    })
    .await;
    assert_eq!(
        seen.lock().deleted,
        vec!["web-2", "web-1"],
        "highest ordinal first"
    );
    let image = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    let images: Vec<String> = pods(&c).await.iter().map(image).collect();
    assert_eq!(images, ["nginx:1", "nginx:2", "nginx:2"]);

    // Lowering the partition to 0 finishes the rollout; the update revision becomes current.
    patch_spec(
        &c,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}),
    )
    .await;
    eventually("the rollout to complete", || async {
        let st = c
            .api::<StatefulSet>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        let ok = st.current_revision == st.update_revision
            && st.current_replicas == Some(3)
            && st.ready_replicas == Some(3);
        ok.then_some(()).ok_or(format!("{st:?}"))
    })
    .await;
    let images: Vec<String> = pods(&c).await.iter().map(image).collect();
    assert_eq!(images, ["nginx:2", "nginx:2", "nginx:2"]);
    let revisions = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(revisions.len(), 2, "one revision per template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_the_pods_a_user_deletes() {
    let c = Cluster::start("sts-ondelete", LOOPS, 2).await;
    create(
        &c,
        &manifest(2, json!({"updateStrategy": {"type": "OnDelete"}})),
    )
    .await;
    wait_ready(&c, 2).await;
    let old_uids: Vec<Option<String>> = pods(&c).await.iter().map(|p| p.uid()).collect();

    patch_spec(
        &c,
        json!({"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}),
    )
    .await;
    eventually("the new template to be observed", || async {
        let s = c
            .api::<StatefulSet>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let st = s.status.clone().unwrap_or_default();
        let ok = st.observed_generation == s.metadata.generation
            && st.update_revision.is_some()
            && st.update_revision != st.current_revision;
        ok.then_some(()).ok_or(format!("{st:?}"))
    })
    .await;
    let st = c
        .api::<StatefulSet>()
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap();
    // Upstream omits a zero updatedReplicas (omitempty), so it reads as None.
    assert_eq!(
        (st.updated_replicas.unwrap_or(0), st.current_replicas),
        (0, Some(2)),
        "{st:?}"
    );
    let uids: Vec<Option<String>> = pods(&c).await.iter().map(|p| p.uid()).collect();
    assert_eq!(uids, old_uids, "a synced template change deletes nothing");

    c.api::<Pod>()
        .delete("web-1", &DeleteParams::default())
        .await
        .unwrap();
    let new = st.update_revision.unwrap();
    eventually("web-1 recreated from the update revision", || async {
        let pods = pods(&c).await;
        let revisions: Vec<&str> = pods
            .iter()
            .map(|p| label(p, "controller-revision-hash"))
            .collect();
        let ready = pods.iter().all(is_running_ready);
        let ok = ready && revisions == [st.current_revision.as_deref().unwrap(), new.as_str()];
        ok.then_some(()).ok_or(format!("{revisions:?}"))
    })
    .await;
    let web0 = c.api::<Pod>().get("web-0").await.unwrap();
    assert_eq!(web0.uid(), old_uids[0], "web-0 was left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_waits_for_a_statefulset() {
    let c = Arc::new(Cluster::start("sts-kubectl", LOOPS, 2).await);
    create(&c, &manifest(2, json!({}))).await;
    let cluster = c.clone();
    let out = tokio::task::spawn_blocking(move || {
        cluster.kubectl(&["rollout", "status", "statefulset/web", "--timeout=60s"])
    })
    .await
    .unwrap();
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    let st = c
        .api::<StatefulSet>()
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        st.ready_replicas,
        Some(2),
        "rollout status returned only once both pods were ready"
    );
}
