//! The DaemonSet loop beside the scheduler on simulated nodes: one pod per eligible node,
//! nodes gaining and losing eligibility, failed pods replaced, rolling updates within
//! maxUnavailable, OnDelete, and `kubectl rollout status` as a user runs it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::{eventually, Cluster};
use serde_json::{json, Value};

const LOOPS: &[&str] = &["daemonset", "scheduler"];

fn daemon_set(name: &str, spec_extra: Value) -> DaemonSet {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "agent:1"}]},
        },
    });
    merge(&mut spec, spec_extra);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// One line per live daemon pod: (node, ready, revision hash).
#[derive(Debug, Clone, PartialEq)]
struct Placed {
    name: String,
    node: String,
    ready: bool,
    hash: String,
    phase: String,
}

async fn placed(c: &Cluster, app: &str) -> Result<Vec<Placed>, String> {
    let lp = ListParams::default().labels(&format!("app={app}"));
    let pods = c.api::<Pod>().list(&lp).await.map_err(|e| e.to_string())?;
    Ok(pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| Placed {
            name: p.name_any(),
            node: p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            ready: p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            hash: p
                .labels()
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default(),
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
        })
        .collect())
}

/// Ready pods by node, e.g. {"sim-0": 1, "sim-1": 1}.
fn ready_per_node(pods: &[Placed]) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for p in pods.iter().filter(|p| p.ready) {
        *by_node.entry(p.node.clone()).or_default() += 1;
    }
    by_node
}

fn nodes_map(nodes: &[&str]) -> BTreeMap<String, usize> {
    nodes.iter().map(|n| (n.to_string(), 1)).collect()
}

async fn wait_ready_on(c: &Cluster, app: &str, nodes: &[&str]) {
    let want = nodes_map(nodes);
    eventually(
        &format!("one ready {app} pod on each of {nodes:?}"),
        || async {
            let pods = placed(c, app).await?;
            let by_node = ready_per_node(&pods);
            let all_on_want = pods.iter().all(|p| want.contains_key(&p.node));
            (by_node == want && all_on_want)
                .then_some(())
                .ok_or(format!("{pods:?}"))
        },
    )
    .await;
}

async fn patch_node(c: &Cluster, node: &str, patch: Value) {
    Api::<Node>::all(c.client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn ds_status(c: &Cluster, name: &str) -> Result<(DaemonSet, Value), String> {
    let ds = c
        .api::<DaemonSet>()
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let status = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap();
    Ok((ds, status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_runs_on_each_node_except_a_tainted_one() {
    let c = Cluster::start("ds-basic", LOOPS, 3).await;
    patch_node(
        &c,
        "sim-2",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &daemon_set("agent", json!({})))
        .await
        .unwrap();

    wait_ready_on(&c, "agent", &["sim-0", "sim-1"]).await;
    eventually("status counts two of two nodes", || async {
        let (ds, s) = ds_status(&c, "agent").await?;
        let want = json!({
            "desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberMisscheduled": 0,
            "numberReady": 2, "numberAvailable": 2, "updatedNumberScheduled": 2,
            "observedGeneration": ds.metadata.generation,
        });
        let got: Value = want
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), s[k].clone()))
            .collect();
        (got == want && s.get("numberUnavailable").is_none_or(|v| v == 0))
            .then_some(())
            .ok_or(format!("{s}"))
    })
    .await;
    let out = tokio::task::block_in_place(|| {
        c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
    });
    assert!(out.contains("successfully rolled out"), "{out}");
    c.wait_described(
        &["daemonset", "agent"],
        &["SuccessfulCreate", "Created pod: agent-"],
    )
    .await;

    let pod = c
        .api::<Pod>()
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .remove(0);
    let spec = pod.spec.unwrap();
    let node = spec.node_name.clone().unwrap();
    let required = spec
        .affinity
        .unwrap()
        .node_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap();
    let field = &required.node_selector_terms[0]
        .match_fields
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (field.key.as_str(), field.values.clone()),
        ("metadata.name", Some(vec![node])),
        "pinned to its node"
    );
    let tolerations = spec.tolerations.unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|t| t.key.as_deref() == Some(key)),
            "tolerates {key}: {tolerations:?}"
        );
    }
    let revisions = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(revisions.len(), 1, "one revision for one template");
    assert_eq!(
        pod.metadata.labels.unwrap()["controller-revision-hash"],
        revisions[0].labels()["controller-revision-hash"]
    );

    // Tolerating the taint brings the third node in.
    let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}});
    c.api::<DaemonSet>()
        .patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    wait_ready_on(&c, "agent", &["sim-0", "sim-1", "sim-2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_start_matching_get_a_pod_and_removed_nodes_lose_theirs() {
    let c = Cluster::start("ds-nodes", LOOPS, 3).await;
    patch_node(
        &c,
        "sim-0",
        json!({"metadata": {"labels": {"role": "edge"}}}),
    )
    .await;
    let ds = daemon_set(
        "edge",
        json!({"template": {"spec": {"nodeSelector": {"role": "edge"}}}}),
    );
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    wait_ready_on(&c, "edge", &["sim-0"]).await;

    patch_node(
        &c,
        "sim-1",
        json!({"metadata": {"labels": {"role": "edge"}}}),
    )
    .await;
    wait_ready_on(&c, "edge", &["sim-0", "sim-1"]).await;

    patch_node(&c, "sim-0", json!({"metadata": {"labels": {"role": null}}})).await;
    wait_ready_on(&c, "edge", &["sim-1"]).await;

    // A node with no kubelet behind it: its pod is created and bound but never runs;
    // when the node object goes, so does the pod.
    let extra: Node =
        serde_json::from_value(json!({"metadata": {"name": "extra", "labels": {"role": "edge"}}}))
            .unwrap();
    Api::<Node>::all(c.client.clone())
        .create(&PostParams::default(), &extra)
        .await
        .unwrap();
    eventually("a pod meant for the new node", || async {
        let pods = placed(&c, "edge").await?;
        let targets: Vec<String> = c
            .api::<Pod>()
            .list(&ListParams::default().labels("app=edge"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .filter_map(|p| {
                let terms = &p
                    .spec
                    .as_ref()?
                    .affinity
                    .as_ref()?
                    .node_affinity
                    .as_ref()?
                    .required_during_scheduling_ignored_during_execution
                    .as_ref()?
                    .node_selector_terms;
                terms[0].match_fields.as_ref()?[0]
                    .values
                    .as_ref()?
                    .first()
                    .cloned()
            })
            .collect();
        targets
            .contains(&"extra".to_string())
            .then_some(())
            .ok_or(format!("{pods:?}"))
    })
    .await;
    Api::<Node>::all(c.client.clone())
        .delete("extra", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the removed node's pod to be gone", || async {
        let pods = c
            .api::<Pod>()
            .list(&ListParams::default().labels("app=edge"))
            .await
            .map_err(|e| e.to_string())?
            .items;
        let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        let pinned_extra = pods.iter().any(|p| {
            serde_json::to_string(&p.spec)
                .unwrap()
                .contains("\"extra\"")
        });
        (!pinned_extra && pods.len() == 1)
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;
    eventually("status for one edge node", || async {
        let (_, s) = ds_status(&c, "edge").await?;
        (s["desiredNumberScheduled"] == 1 && s["numberReady"] == 1 && s["numberMisscheduled"] == 0)
            .then_some(())
            .ok_or(format!("{s}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_daemon_pod_is_replaced() {
    let c = Cluster::start("ds-failed", LOOPS, 1).await;
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &daemon_set("agent", json!({})))
        .await
        .unwrap();
    wait_ready_on(&c, "agent", &["sim-0"]).await;
    let first = placed(&c, "agent").await.unwrap().remove(0);
    let failed = json!({"status": {"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]}});
    c.api::<Pod>()
        .patch_status(&first.name, &PatchParams::default(), &Patch::Merge(failed))
        .await
        .unwrap();
    eventually("a new running pod in place of the failed one", || async {
        let pods = placed(&c, "agent").await?;
        let ok = pods.len() == 1
            && pods[0].name != first.name
            && pods[0].ready
            && pods[0].phase == "Running";
        ok.then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_pods_within_max_unavailable() {
    let c = Cluster::start("ds-rolling", LOOPS, 4).await;
    let ds = daemon_set(
        "agent",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}),
    );
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let all = ["sim-0", "sim-1", "sim-2", "sim-3"];
    wait_ready_on(&c, "agent", &all).await;
    let old_hash = placed(&c, "agent").await.unwrap()[0].hash.clone();

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    c.api::<DaemonSet>()
        .patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    // Sample the pods all through the rollout: never more than one node without a ready
    // pod, and it ends with every pod on the new revision.
    let fewest_ready = AtomicUsize::new(all.len());
    eventually("every pod on the new revision and ready", || async {
        let pods = placed(&c, "agent").await?;
        fewest_ready.fetch_min(ready_per_node(&pods).len(), Ordering::SeqCst);
        let done = pods.len() == 4
            && pods
                .iter()
                .all(|p| p.ready && !p.hash.is_empty() && p.hash != old_hash);
        done.then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;
    let fewest_ready = fewest_ready.into_inner();
    assert!(
        fewest_ready >= 3,
        "maxUnavailable 1 of 4 nodes, but only {fewest_ready} had a ready pod at one point"
    );
    let out = tokio::task::block_in_place(|| {
        c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
    });
    assert!(out.contains("successfully rolled out"), "{out}");
    let mut numbers: Vec<i64> = c
        .api::<ControllerRevision>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2], "one revision per template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surging_update_keeps_every_node_served() {
    let c = Cluster::start("ds-surge", LOOPS, 3).await;
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    let ds = daemon_set("agent", json!({"updateStrategy": strategy}));
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let all = ["sim-0", "sim-1", "sim-2"];
    wait_ready_on(&c, "agent", &all).await;
    let old_hash = placed(&c, "agent").await.unwrap()[0].hash.clone();

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    c.api::<DaemonSet>()
        .patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    // maxUnavailable 0: every node keeps a ready pod throughout; maxSurge 1: at most one
    // node runs two pods at a time.
    let fewest_ready = AtomicUsize::new(all.len());
    let most_pods = AtomicUsize::new(all.len());
    eventually("every pod on the new revision and ready", || async {
        let pods = placed(&c, "agent").await?;
        fewest_ready.fetch_min(ready_per_node(&pods).len(), Ordering::SeqCst);
        most_pods.fetch_max(pods.len(), Ordering::SeqCst);
        let done = pods.len() == 3 && pods.iter().all(|p| p.ready && p.hash != old_hash);
        done.then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;
    assert_eq!(
        fewest_ready.into_inner(),
        3,
        "a node was left without a ready pod"
    );
    assert!(
        most_pods.into_inner() <= 4,
        "more than one surge pod at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_waits_for_the_user_to_delete_old_pods() {
    let c = Cluster::start("ds-ondelete", LOOPS, 2).await;
    let ds = daemon_set("agent", json!({"updateStrategy": {"type": "OnDelete"}}));
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    wait_ready_on(&c, "agent", &["sim-0", "sim-1"]).await;
    let before = placed(&c, "agent").await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    c.api::<DaemonSet>()
        .patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    eventually("the new template observed with nothing updated", || async {
        let (ds, s) = ds_status(&c, "agent").await?;
        let observed = s["observedGeneration"] == json!(ds.metadata.generation);
        // A zero updatedNumberScheduled is omitted, as upstream's omitempty field.
        let updated = s["updatedNumberScheduled"].as_i64().unwrap_or(0);
        (observed && updated == 0)
            .then_some(())
            .ok_or(format!("{s}"))
    })
    .await;
    let mut names: Vec<String> = placed(&c, "agent")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    names.sort();
    let mut old_names: Vec<String> = before.iter().map(|p| p.name.clone()).collect();
    old_names.sort();
    assert_eq!(names, old_names, "OnDelete replaces nothing by itself");

    let victim = before.iter().find(|p| p.node == "sim-0").unwrap();
    c.api::<Pod>()
        .delete(&victim.name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("a new-revision pod on sim-0 only", || async {
        let pods = placed(&c, "agent").await?;
        let on = |n: &str| {
            pods.iter()
                .find(|p| p.node == n && p.ready)
                .map(|p| p.hash.clone())
        };
        let (h0, h1) = (on("sim-0"), on("sim-1"));
        let ok = pods.len() == 2
            && h0.is_some()
            && h1.is_some()
            && h0 != h1
            && h1.as_deref() == Some(before[0].hash.as_str());
        ok.then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_history_and_undo_go_through_controller_revisions() {
    let c = Cluster::start("ds-undo", LOOPS, 2).await;
    c.api::<DaemonSet>()
        .create(&PostParams::default(), &daemon_set("agent", json!({})))
        .await
        .unwrap();
    wait_ready_on(&c, "agent", &["sim-0", "sim-1"]).await;
    let first_hash = placed(&c, "agent").await.unwrap()[0].hash.clone();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    c.api::<DaemonSet>()
        .patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| {
        c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=40s"])
    });
    assert!(out.contains("successfully rolled out"), "{out}");

    let history =
        tokio::task::block_in_place(|| c.kubectl(&["rollout", "history", "daemonset/agent"]));
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<i64>().is_ok())
        .collect();
    assert_eq!(
        revisions,
        vec!["1", "2"],
        "history lists both revisions:\n{history}"
    );

    let out = tokio::task::block_in_place(|| c.kubectl(&["rollout", "undo", "daemonset/agent"]));
    assert!(out.contains("rolled back"), "{out}");
    let out = tokio::task::block_in_place(|| {
        c.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=40s"])
    });
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(
        "the first template back, as revision 3 of its original ControllerRevision",
        || async {
            let pods = placed(&c, "agent").await?;
            let revs = c
                .api::<ControllerRevision>()
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let mut numbers: Vec<(i64, String)> = revs
                .iter()
                .map(|r| (r.revision, r.labels()["controller-revision-hash"].clone()))
                .collect();
            numbers.sort();
            let back = pods.len() == 2 && pods.iter().all(|p| p.ready && p.hash == first_hash);
            let renumbered = numbers.len() == 2 && numbers[1] == (3, first_hash.clone());
            (back && renumbered)
                .then_some(())
                .ok_or(format!("{pods:?} {numbers:?}"))
        },
    )
    .await;
}
