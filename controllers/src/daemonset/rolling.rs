//! RollingUpdate as a pure plan (upstream rollingUpdate). Without surge, old pods are
//! deleted while fewer than maxUnavailable pods are unavailable and the core loop puts
//! new ones in their place; with surge, new pods start beside at most maxSurge
//! available old ones and each old pod goes once its replacement is available.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::nodes::{node_fit, template_generation, REVISION_HASH_LABEL, TEMPLATE_GENERATION_LABEL};
use super::plan::PodsByNode;
use crate::podcontrol::{is_available, is_deleting};
use crate::shared::scale::scaled_value;

fn rolling_params(ds: &DaemonSet) -> Option<(Option<&IntOrString>, Option<&IntOrString>)> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    let ru = strategy.rolling_update.as_ref();
    Some((
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
    ))
}

pub fn is_rolling(ds: &DaemonSet) -> bool {
    rolling_params(ds).is_some()
}

/// maxSurge in pods for `desired` scheduled pods, percentages rounded up; 0 unless
/// the strategy is RollingUpdate.
pub fn surge_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling_params(ds)
        .and_then(|(surge, _)| surge)
        .map_or(0, |v| scaled_value(v, desired, true).max(0))
}

/// maxUnavailable in pods for `desired`, percentages rounded up (unlike a Deployment:
/// 10% of 3 nodes is 1 pod, not 0).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> i32 {
    rolling_params(ds)
        .and_then(|(_, u)| u)
        .map_or(0, |v| scaled_value(v, desired, true).max(0))
}

/// Upstream AllowsSurge: a maxSurge that is more than zero pods of one.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1) > 0
}

/// (maxSurge, maxUnavailable) for `desired` nodes. Both zero cannot make progress, so
/// (as upstream) one pod may be unavailable.
pub fn budgets(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let (surge, unavailable) = (surge_count(ds, desired), unavailable_count(ds, desired));
    if desired > 0 && surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// Whether `pod` runs the current template: its revision hash, or the template
/// generation label when the DaemonSet carries upstream's generation annotation.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && label(REVISION_HASH_LABEL) == Some(hash);
    let generation_matches = generation
        .is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

/// The node's live new and old pod, or `None` when it has more than one of either (the
/// core loop prunes those first).
fn updated_and_old<'a>(
    pods: &[&'a Pod],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !is_deleting(&p.metadata)) {
        let slot = if is_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(*pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// What one rolling step does.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Old pods to delete.
    pub delete: Vec<String>,
    /// Nodes to start a new pod on beside the old one (surge only).
    pub create_on: Vec<String>,
}

/// One rolling step over every node that runs or should run the DaemonSet.
pub fn step(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &PodsByNode<'_>,
    hash: &str,
    now: Timestamp,
) -> Step {
    let by_name: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, *n)))
        .collect();
    let mut per_node: BTreeMap<&str, Vec<&Pod>> = by_node
        .iter()
        .map(|(n, p)| (n.as_str(), p.clone()))
        .collect();
    let mut desired = 0;
    for (name, node) in &by_name {
        if node_fit(node, ds).should_run {
            desired += 1;
            per_node.entry(name).or_default();
        }
    }
    let (max_surge, max_unavailable) = budgets(ds, desired);
    let generation = template_generation(ds);
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let available = |p: &Pod| is_available(p, min_ready, now);
    let should_run = |n: &str| {
        by_name
            .get(n)
            .is_some_and(|node| node_fit(node, ds).should_run)
    };
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();

    if max_surge == 0 {
        // Deleted pods do not count as unavailable, so a rollout still progresses when
        // nodes are down. Unavailable old pods are replaced regardless of the budget.
        let mut unavailable = 0;
        let (mut replace, mut candidates) = (Vec::new(), Vec::new());
        for pods in per_node.values() {
            match updated_and_old(pods, hash, generation) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!available(new)),
                Some((None, Some(old))) if !available(old) => {
                    replace.push(name(old));
                    unavailable += 1;
                }
                Some((None, Some(old))) => {
                    if unavailable < max_unavailable {
                        candidates.push(name(old));
                    }
                }
            }
        }
        // 5 nodes, maxUnavailable 2, one new pod still starting: 2 - 1 = 1 old pod goes.
        let room = usize::try_from(max_unavailable - unavailable)
            .unwrap_or(0)
            .min(candidates.len());
        replace.extend(candidates.into_iter().take(room));
        return Step {
            delete: replace,
            create_on: Vec::new(),
        };
    }

    let mut step = Step::default();
    let (mut surging, mut available_nodes) = (0, 0);
    let (mut allowed, mut candidates, mut sunset) = (Vec::new(), Vec::new(), Vec::new());
    for (node, pods) in &per_node {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_nodes += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if should_run(node) {
                    allowed.push(node.to_string());
                } else {
                    step.delete.push(name(old));
                }
            }
            (None, Some(old)) => {
                if !should_run(node) {
                    sunset.push(old);
                } else if surging < max_surge {
                    candidates.push(node.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    step.delete.push(name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Surge promises full availability: an old pod on a node that no longer fits goes
    // only while more pods are available than nodes want one (3 available, 2 desired:
    // one may go).
    let deletable = usize::try_from(available_nodes - desired).unwrap_or(0);
    step.delete
        .extend(sunset.into_iter().take(deletable).map(name));
    let room = usize::try_from(max_surge - surging)
        .unwrap_or(0)
        .min(candidates.len());
    step.create_on = allowed;
    step.create_on.extend(candidates.into_iter().take(room));
    step
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;
    use crate::daemonset::fixtures::*;
    use crate::daemonset::plan::pods_by_node;
    use crate::fixtures::NodeFixture;

    #[test]
    fn surge_and_unavailable_budgets_round_up_like_upstream() {
        let cases = [
            ("defaults 1/0 on 10 nodes", daemon_set("ds"), 10, (0, 1)),
            (
                "numbers are taken as they are",
                daemon_set("ds").rolling("3", "0"),
                10,
                (0, 3),
            ),
            (
                "25% of 10 rounds up to 3",
                daemon_set("ds").rolling("25%", "0"),
                10,
                (0, 3),
            ),
            (
                "10% of 3 rounds up to 1",
                daemon_set("ds").rolling("10%", "0"),
                3,
                (0, 1),
            ),
            (
                "surge percentages round up too",
                daemon_set("ds").rolling("0", "30%"),
                5,
                (2, 0),
            ),
            (
                "both zero allows one unavailable",
                daemon_set("ds").rolling("0", "0"),
                4,
                (0, 1),
            ),
            (
                "0% of nothing stays zero",
                daemon_set("ds").rolling("0%", "0%"),
                0,
                (0, 0),
            ),
            (
                "100% surge",
                daemon_set("ds").rolling("0", "100%"),
                7,
                (7, 0),
            ),
        ];
        for (name, ds, desired, want) in cases {
            assert_eq!(budgets(&ds, desired), want, "{name}");
        }
        assert!(
            allows_surge(&daemon_set("ds").rolling("0", "1%")),
            "1% of one node rounds up to a pod"
        );
        assert!(!allows_surge(&daemon_set("ds")), "default maxSurge is 0");
        assert!(
            !is_rolling(&daemon_set("ds").on_delete()),
            "OnDelete never rolls"
        );
        assert_eq!(
            surge_count(
                &daemon_set("ds").on_delete().rolling("0", "1").on_delete(),
                4
            ),
            0
        );
    }

    fn nodes(n: usize) -> Vec<Node> {
        (0..n).map(|i| Node::test(&format!("n{i}"))).collect()
    }

    /// Pods named after their node: `old-n0`, `new-n1`; available ones ready since 0.
    fn pods(spec: &[(&str, &str, bool)]) -> Vec<Pod> {
        spec.iter()
            .map(|(kind, node, ready)| {
                let p = pod(&format!("{kind}-{node}")).on_node(node).running();
                let p = if *ready { p.ready_since(0) } else { p };
                p.revision(if *kind == "new" { "new" } else { "old" })
            })
            .collect()
    }

    /// (name, DaemonSet, node count, pods as (old|new, node, available), expected step)
    type RollingCase = (
        &'static str,
        DaemonSet,
        usize,
        Vec<(&'static str, &'static str, bool)>,
        Step,
    );

    #[test]
    fn rolling_steps_respect_max_unavailable_and_max_surge() {
        let now = Timestamp::from_second(100).unwrap();
        let cases: Vec<RollingCase> = vec![
            (
                "maxUnavailable 1: one old pod at a time",
                daemon_set("ds"),
                3,
                vec![
                    ("old", "n0", true),
                    ("old", "n1", true),
                    ("old", "n2", true),
                ],
                Step {
                    delete: vec!["old-n0".into()],
                    create_on: vec![],
                },
            ),
            (
                "maxUnavailable 2 with one new pod still starting: one more goes",
                daemon_set("ds").rolling("2", "0"),
                3,
                vec![
                    ("new", "n0", false),
                    ("old", "n1", true),
                    ("old", "n2", true),
                ],
                Step {
                    delete: vec!["old-n1".into()],
                    create_on: vec![],
                },
            ),
            (
                "a node waiting for its new pod counts as unavailable",
                daemon_set("ds"),
                3,
                vec![("old", "n1", true), ("old", "n2", true)],
                Step::default(),
            ),
            (
                "unavailable old pods are replaced beyond the budget",
                daemon_set("ds"),
                3,
                vec![
                    ("old", "n0", false),
                    ("old", "n1", false),
                    ("old", "n2", true),
                ],
                Step {
                    delete: vec!["old-n0".into(), "old-n1".into()],
                    create_on: vec![],
                },
            ),
            (
                "50% of 4 nodes: two at once",
                daemon_set("ds").rolling("50%", "0"),
                4,
                vec![
                    ("old", "n0", true),
                    ("old", "n1", true),
                    ("old", "n2", true),
                    ("old", "n3", true),
                ],
                Step {
                    delete: vec!["old-n0".into(), "old-n1".into()],
                    create_on: vec![],
                },
            ),
            (
                "all updated and available: nothing to do",
                daemon_set("ds"),
                2,
                vec![("new", "n0", true), ("new", "n1", true)],
                Step::default(),
            ),
            (
                "maxSurge 1: one new pod beside an old one",
                daemon_set("ds").rolling("0", "1"),
                3,
                vec![
                    ("old", "n0", true),
                    ("old", "n1", true),
                    ("old", "n2", true),
                ],
                Step {
                    delete: vec![],
                    create_on: vec!["n0".into()],
                },
            ),
            (
                "maxSurge 1 already surging: wait",
                daemon_set("ds").rolling("0", "1"),
                2,
                vec![
                    ("old", "n0", true),
                    ("new", "n0", false),
                    ("old", "n1", true),
                ],
                Step::default(),
            ),
            (
                "surged pod available: old one goes, next node surges",
                daemon_set("ds").rolling("0", "1"),
                2,
                vec![
                    ("old", "n0", true),
                    ("new", "n0", true),
                    ("old", "n1", true),
                ],
                Step {
                    delete: vec!["old-n0".into()],
                    create_on: vec!["n1".into()],
                },
            ),
            (
                "surge: an unavailable old pod is replaced beyond the budget",
                daemon_set("ds").rolling("0", "1"),
                2,
                vec![("old", "n0", false), ("old", "n1", false)],
                Step {
                    delete: vec![],
                    create_on: vec!["n0".into(), "n1".into()],
                },
            ),
            (
                "surge 50% of 4 nodes: two at once",
                daemon_set("ds").rolling("0", "50%"),
                4,
                vec![
                    ("old", "n0", true),
                    ("old", "n1", true),
                    ("old", "n2", true),
                    ("old", "n3", true),
                ],
                Step {
                    delete: vec![],
                    create_on: vec!["n0".into(), "n1".into()],
                },
            ),
        ];
        for (name, ds, n, spec, want) in cases {
            let nodes = nodes(n);
            let node_refs: Vec<&Node> = nodes.iter().collect();
            let pods = pods(&spec);
            let refs: Vec<&Pod> = pods.iter().collect();
            let by_node = pods_by_node(&refs, false);
            assert_eq!(step(&ds, &node_refs, &by_node, "new", now), want, "{name}");
        }
    }

    #[test]
    fn pods_are_updated_by_hash_or_by_upstream_template_generation() {
        let p = pod("p")
            .labelled(&[(TEMPLATE_GENERATION_LABEL, "4")])
            .revision("abc");
        let cases = [
            ("hash matches", "abc", None, true),
            ("hash differs, no generation annotation", "xyz", None, false),
            (
                "hash differs, template generation matches",
                "xyz",
                Some(4),
                true,
            ),
            ("neither matches", "xyz", Some(5), false),
            ("an empty hash matches nothing", "", None, false),
        ];
        for (name, hash, generation, want) in cases {
            assert_eq!(is_updated(&p, hash, generation), want, "{name}");
        }
    }
}
