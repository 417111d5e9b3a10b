//! The DaemonSet's core loop as a pure plan (upstream manage / podsShouldBeOnNode): one
//! pod on every node that should run it, none elsewhere, failed pods replaced after a
//! back-off, duplicates pruned (when surging, an old and a new pod may share a node
//! until the new one is available).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;

use super::backoff::Backoff;
use super::nodes::{node_fit, target_node, REVISION_HASH_LABEL};
use super::rolling::allows_surge;
use crate::podcontrol::{is_available, is_deleting, is_ready};

/// The DaemonSet's pods grouped by the node they are on or meant for.
pub type PodsByNode<'a> = BTreeMap<String, Vec<&'a Pod>>;

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Groups `pods` by target node. Finished pods already being deleted are left out
/// unless `include_deleted_terminal` (the controller has nothing left to do with them,
/// but revision cleanup must still see their hashes).
pub fn pods_by_node<'a>(pods: &[&'a Pod], include_deleted_terminal: bool) -> PodsByNode<'a> {
    let mut by_node = PodsByNode::new();
    for pod in pods {
        if !include_deleted_terminal && is_terminal(pod) && is_deleting(&pod.metadata) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node.to_string()).or_default().push(pod);
        }
    }
    by_node
}

/// Upstream podByCreationTimestampAndPhase: bound pods first, then oldest, then by name.
pub fn oldest_first(a: &&Pod, b: &&Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What one sync of the core loop does.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<&'a Pod>,
    /// Pods meant for nodes that no longer exist, terminating ones included: deleted
    /// with no grace period, since no kubelet is left to confirm they stopped (upstream
    /// leaves these to the pod GC, which kybern does not have).
    pub orphaned: Vec<&'a Pod>,
    /// A failed pod is waiting out its back-off: sync again then.
    pub retry_after: Option<Duration>,
}

/// The back-off key of a node's failed pods (upstream failedPodsBackoffKey).
pub fn backoff_key(ds: &DaemonSet, node: &str) -> String {
    let generation = ds
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    format!(
        "{}/{generation}/{node}",
        ds.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The plan for every node; `backoff` records the failed pods it replaces.
pub fn plan<'a>(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &PodsByNode<'a>,
    hash: &str,
    backoff: &Backoff,
    now: Instant,
    now_ts: Timestamp,
) -> Plan<'a> {
    let mut plan = Plan::default();
    for node in nodes {
        on_node(ds, node, by_node, hash, backoff, now, now_ts, &mut plan);
    }
    let known: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for (node, pods) in by_node {
        if !known.contains(node.as_str()) {
            // Terminating ones too: with no kubelet to finish them they would hang.
            plan.orphaned.extend(pods.iter());
        }
    }
    plan
}

#[allow(clippy::too_many_arguments)] // one node's slice of `plan`, kept apart to read as upstream does
fn on_node<'a>(
    ds: &DaemonSet,
    node: &Node,
    by_node: &PodsByNode<'a>,
    hash: &str,
    backoff: &Backoff,
    now: Instant,
    now_ts: Timestamp,
    plan: &mut Plan<'a>,
) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let fit = node_fit(node, ds);
    let pods = by_node.get(name);
    match pods {
        None if fit.should_run => plan.create_on.push(name.to_string()),
        None => {}
        Some(pods) if !fit.should_continue => {
            plan.delete
                .extend(pods.iter().filter(|p| !is_deleting(&p.metadata)));
        }
        Some(pods) => {
            let mut running = Vec::new();
            for pod in pods.iter().filter(|p| !is_deleting(&p.metadata)) {
                match phase(pod) {
                    // Failed (or ran to completion, which a daemon must not): replace it,
                    // but not faster than the back-off allows.
                    Some("Failed" | "Succeeded") => {
                        let key = backoff_key(ds, name);
                        if let Some(wait) = backoff.remaining(&key, now) {
                            plan.retry_after = Some(plan.retry_after.map_or(wait, |w| w.min(wait)));
                            continue;
                        }
                        backoff.next(&key, now);
                        plan.delete.push(pod);
                    }
                    _ => running.push(*pod),
                }
            }
            prune_duplicates(ds, fit.should_run, running, hash, now_ts, name, plan);
        }
    }
}

/// More than one live pod on a node: without surge keep the oldest; with surge keep the
/// oldest current-revision pod and the oldest old one, and drop the old one once the
/// new one is available (or the old one is no longer ready).
fn prune_duplicates<'a>(
    ds: &DaemonSet,
    should_run: bool,
    mut running: Vec<&'a Pod>,
    hash: &str,
    now: Timestamp,
    node: &str,
    plan: &mut Plan<'a>,
) {
    running.sort_by(oldest_first);
    if !allows_surge(ds) {
        plan.delete.extend(running.iter().skip(1));
        return;
    }
    if running.len() <= 1 {
        // Surging: every failed pod was deleted, so a node left with none needs one now.
        if running.is_empty() && should_run {
            plan.create_on.push(node.to_string());
        }
        return;
    }
    let (mut newest, mut oldest) = (None, None);
    for pod in running {
        let current = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL))
            .is_some_and(|h| h == hash);
        let slot = if current { &mut newest } else { &mut oldest };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            plan.delete.push(pod);
        }
    }
    if let (Some(new), Some(old)) = (newest, oldest) {
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if !is_ready(old) || is_available(new, min_ready, now) {
            plan.delete.push(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;
    use crate::daemonset::fixtures::*;
    use crate::fixtures::NodeFixture;

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    struct Case {
        name: &'static str,
        ds: DaemonSet,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        create_on: Vec<&'static str>,
        delete: Vec<&'static str>,
        orphaned: Vec<&'static str>,
    }

    #[test]
    fn the_core_loop_puts_one_pod_on_each_eligible_node() {
        let now = Timestamp::from_second(1000).unwrap();
        let cases = vec![
            Case {
                name: "empty nodes get a pod each",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1"), Node::test("n2")],
                pods: vec![pod("a").on_node("n1").running()],
                create_on: vec!["n2"],
                delete: vec![],
                orphaned: vec![],
            },
            Case {
                name: "a pod pinned but not yet bound counts for its node",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1")],
                pods: vec![Pod {
                    spec: super::super::nodes::pin_to_node(&Default::default(), "n1").spec,
                    ..pod("a")
                }],
                create_on: vec![],
                delete: vec![],
                orphaned: vec![],
            },
            Case {
                name: "a node that no longer matches the selector loses its pod",
                ds: daemon_set("ds").node_selector("role", "edge"),
                nodes: vec![Node::test("n1").label("role", "edge"), Node::test("n2")],
                pods: vec![
                    pod("a").on_node("n1").running(),
                    pod("b").on_node("n2").running(),
                ],
                create_on: vec![],
                delete: vec!["b"],
                orphaned: vec![],
            },
            Case {
                name: "a NoSchedule taint keeps a running pod but places no new one",
                ds: daemon_set("ds"),
                nodes: vec![
                    Node::test("n1").taint("k", "v", "NoSchedule"),
                    Node::test("n2").taint("k", "v", "NoSchedule"),
                ],
                pods: vec![pod("a").on_node("n1").running()],
                create_on: vec![],
                delete: vec![],
                orphaned: vec![],
            },
            Case {
                name: "a NoExecute taint evicts",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1").taint("k", "v", "NoExecute")],
                pods: vec![pod("a").on_node("n1").running()],
                create_on: vec![],
                delete: vec!["a"],
                orphaned: vec![],
            },
            Case {
                name: "without surge the oldest of two pods stays",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1")],
                pods: vec![
                    pod("young").on_node("n1").created(20),
                    pod("old").on_node("n1").created(10),
                ],
                create_on: vec![],
                delete: vec!["young"],
                orphaned: vec![],
            },
            Case {
                name: "pods being deleted are neither counted nor deleted again",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1")],
                pods: vec![pod("gone").on_node("n1").deleting(), pod("a").on_node("n1")],
                create_on: vec![],
                delete: vec![],
                orphaned: vec![],
            },
            Case {
                name: "a failed pod is deleted (its replacement comes next sync)",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1")],
                pods: vec![pod("a").on_node("n1").phase("Failed")],
                create_on: vec![],
                delete: vec!["a"],
                orphaned: vec![],
            },
            Case {
                name: "pods of vanished nodes are orphaned",
                ds: daemon_set("ds"),
                nodes: vec![Node::test("n1")],
                pods: vec![
                    pod("a").on_node("n1"),
                    pod("b").on_node("gone"),
                    pod("c").on_node("gone").deleting(),
                ],
                create_on: vec![],
                delete: vec![],
                orphaned: vec!["b", "c"],
            },
            Case {
                name: "surging: an available new pod retires the old one",
                ds: daemon_set("ds").rolling("0", "1"),
                nodes: vec![Node::test("n1")],
                pods: vec![
                    pod("old")
                        .on_node("n1")
                        .running()
                        .ready_since(1)
                        .revision("h1")
                        .created(1),
                    pod("new")
                        .on_node("n1")
                        .running()
                        .ready_since(5)
                        .revision("h2")
                        .created(2),
                ],
                create_on: vec![],
                delete: vec!["old"],
                orphaned: vec![],
            },
            Case {
                name: "surging: an unready new pod keeps the ready old one",
                ds: daemon_set("ds").rolling("0", "1"),
                nodes: vec![Node::test("n1")],
                pods: vec![
                    pod("old")
                        .on_node("n1")
                        .running()
                        .ready_since(1)
                        .revision("h1")
                        .created(1),
                    pod("new").on_node("n1").running().revision("h2").created(2),
                ],
                create_on: vec![],
                delete: vec![],
                orphaned: vec![],
            },
        ];
        for c in cases {
            let backoff = Backoff::default();
            let refs: Vec<&Pod> = c.pods.iter().collect();
            let nodes: Vec<&Node> = c.nodes.iter().collect();
            let by_node = pods_by_node(&refs, false);
            let p = plan(&c.ds, &nodes, &by_node, "h2", &backoff, Instant::now(), now);
            assert_eq!(p.create_on, c.create_on, "{}: create", c.name);
            assert_eq!(names(&p.delete), c.delete, "{}: delete", c.name);
            assert_eq!(names(&p.orphaned), c.orphaned, "{}: orphaned", c.name);
        }
    }

    #[test]
    fn failed_pods_are_replaced_with_back_off() {
        let ds = daemon_set("ds");
        let node = Node::test("n1");
        let failed = pod("a").on_node("n1").phase("Failed");
        let refs = vec![&failed];
        let by_node = pods_by_node(&refs, false);
        let backoff = Backoff::default();
        let t0 = Instant::now();
        let now = Timestamp::from_second(1).unwrap();
        let first = plan(&ds, &[&node], &by_node, "h", &backoff, t0, now);
        assert_eq!(
            names(&first.delete),
            vec!["a"],
            "the first failure is replaced at once"
        );
        let again = plan(&ds, &[&node], &by_node, "h", &backoff, t0, now);
        assert!(again.delete.is_empty(), "a second failure within 1s waits");
        assert_eq!(again.retry_after, Some(Duration::from_secs(1)));
        let later = plan(
            &ds,
            &[&node],
            &by_node,
            "h",
            &backoff,
            t0 + Duration::from_secs(1),
            now,
        );
        assert_eq!(
            names(&later.delete),
            vec!["a"],
            "after the back-off it is replaced"
        );
    }

    #[test]
    fn bound_pods_sort_before_unbound_then_oldest_first() {
        let bound_young = pod("b").on_node("n").created(20);
        let unbound_old = pod("a").created(10);
        let bound_old = pod("c").on_node("n").created(10);
        let mut pods = vec![&unbound_old, &bound_young, &bound_old];
        pods.sort_by(oldest_first);
        assert_eq!(names(&pods), vec!["c", "b", "a"]);
    }
}
