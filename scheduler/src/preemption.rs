//! Default preemption (upstream's PostFilter): for a pod no node fits, find nodes where
//! evicting lower-priority pods makes it fit, keep as few victims as possible (reprieve
//! the highest-priority ones first), and pick the node whose victims matter least.
//!
//! PodDisruptionBudgets count as upstream counts them: walking a node's potential
//! victims from the most important down, each PDB matching a victim spends one of its
//! `disruptionsAllowed`; victims that overdraw a PDB are reprieved first, and nodes
//! are ranked by how many PDB-violating victims they need before anything else.
//!
//! A node is judged without its victims for every plugin: the node's own resources and
//! ports, and the cluster-wide state of inter-pod affinity and topology spread, which is
//! updated pod by pod as upstream's AddPod/RemovePod do (so evicting a pod that repels
//! the preemptor by anti-affinity makes room).

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{Cache, Pdb, PodInfo};
use super::framework::{fit_error_message, Code, CycleState, Status};
use super::profile::run_filters;
use controllers::shared::labels::{self, selector_matches};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The chosen node and the pods to evict from it.
#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims' eviction exceeds a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Splits `pods` (most important first) into those whose eviction some matching PDB
/// cannot afford and the rest (upstream `filterPodsWithPDBViolation`). A PDB with an
/// empty selector matches nothing here, as upstream; pods already listed in a PDB's
/// disruptedPods do not spend from it.
pub fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[Pdb],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i64> = pdbs.iter().map(|p| p.allowed as i64).collect();
    let (mut violating, mut fine) = (vec![], vec![]);
    for pod in pods {
        let mut violated = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            let empty = pdb.selector.as_ref().is_none_or(labels::is_empty);
            if pdb.namespace != pod.namespace
                || empty
                || !selector_matches(pdb.selector.as_ref(), &pod.labels)
                || pdb.disrupted.contains(&pod.name)
            {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violated = true;
            }
        }
        if violated {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// Either a candidate or the message for the FailedScheduling event ("preemption: …").
pub fn preempt(
    state: &CycleState,
    cache: &Cache,
    filter: &HashMap<String, Status>,
) -> Result<Candidate, String> {
    let pod = &state.pod;
    let spec = pod.spec.as_deref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never".into());
    }
    // A pod that already preempted waits while its victims terminate.
    let nominated = pod.nominated_node.as_deref();
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        let terminating = node
            .pods
            .iter()
            .any(|p| p.priority < pod.priority && p.deleting);
        if terminating {
            return Err(
                "preemption: not eligible due to a terminating pod on the nominated node".into(),
            );
        }
    }
    let mut statuses: HashMap<String, Status> = HashMap::new();
    let mut candidates = vec![];
    for node in cache.nodes() {
        if filter
            .get(&node.name)
            .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
        {
            statuses.insert(node.name.clone(), Status::unresolvable(NOT_HELPFUL));
            continue;
        }
        let mut trial = node.clone();
        let mut trial_state = state.clone();
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority)
            .cloned()
            .collect();
        if lower.is_empty() {
            statuses.insert(node.name.clone(), Status::unresolvable(NO_VICTIMS));
            continue;
        }
        for p in &lower {
            trial.remove_pod(&p.uid);
            trial_state.update_for(p, node, &cache.namespaces, -1);
        }
        if let Err(s) = run_filters(&trial_state, &trial) {
            statuses.insert(node.name.clone(), s);
            continue;
        }
        // Reprieve from the most important down (higher priority, then older), PDB
        // violators first: add each back if the pod still fits.
        lower.sort_by_key(|p| (std::cmp::Reverse(p.priority), p.started));
        let (violating, fine) = split_by_pdb(lower, cache.pdbs());
        let mut victims = vec![];
        let mut pdb_violations = 0;
        for (p, violates) in violating
            .into_iter()
            .map(|p| (p, true))
            .chain(fine.into_iter().map(|p| (p, false)))
        {
            trial.add_pod(p.clone());
            trial_state.update_for(&p, node, &cache.namespaces, 1);
            if run_filters(&trial_state, &trial).is_err() {
                trial.remove_pod(&p.uid);
                trial_state.update_for(&p, node, &cache.namespaces, -1);
                victims.push(p);
                pdb_violations += violates as usize;
            }
        }
        candidates.push(Candidate {
            node: node.name.clone(),
            victims,
            pdb_violations,
        });
    }
    // Upstream's pickOneNodeForPreemption: fewest PDB violations, then the lowest
    // top victim priority, then the lowest sum of priorities each shifted by 2^31 (so
    // fewer victims weigh less whatever their priorities), then the fewest victims,
    // then the node whose top-priority victims started latest (the least work lost);
    // on a full tie the first node.
    candidates
        .into_iter()
        .min_by_key(|c| {
            let top = c
                .victims
                .iter()
                .map(|v| v.priority)
                .max()
                .unwrap_or(i32::MIN);
            let sum: i64 = c
                .victims
                .iter()
                .map(|v| v.priority as i64 + i32::MAX as i64 + 1)
                .sum();
            let earliest_top_start = c
                .victims
                .iter()
                .filter(|v| v.priority == top)
                .map(|v| v.started)
                .min()
                .unwrap_or(i128::MAX);
            (
                c.pdb_violations,
                top,
                sum,
                c.victims.len(),
                std::cmp::Reverse(earliest_top_start),
            )
        })
        .ok_or_else(|| {
            format!(
                "preemption: {}",
                fit_error_message(cache.nodes().len(), &statuses, None, "")
            )
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::config::SchedulerConfig;
    use crate::filters::fixtures::{cluster, state};
    use crate::schedule_one::schedule;
    use controllers::fixtures::{NodeFixture, PodFixture};

    fn run(cache: &Cache, pod: Pod) -> Result<(String, Vec<String>), String> {
        let st = state(pod, cache);
        let err =
            schedule(&st, cache, &SchedulerConfig::default(), 0).expect_err("pod must not fit");
        let c = preempt(&st, cache, &err.statuses)?;
        let mut v: Vec<String> = c.victims.iter().map(|v| v.name.clone()).collect();
        v.sort();
        Ok((c.node, v))
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let cache = cluster(
            vec![
                Node::test("n1").cpu("4"),
                Node::test("n2").cpu("4"),
                Node::test("tainted").cpu("8").taint("k", "v", "NoSchedule"),
            ],
            vec![
                Pod::test("n1-low")
                    .on_node("n1")
                    .requests("2", "1Gi")
                    .priority(1),
                Pod::test("n1-mid")
                    .on_node("n1")
                    .requests("2", "1Gi")
                    .priority(5),
                Pod::test("n2-mid-a")
                    .on_node("n2")
                    .requests("2", "1Gi")
                    .priority(5),
                Pod::test("n2-mid-b")
                    .on_node("n2")
                    .requests("2", "1Gi")
                    .priority(5),
            ],
        );
        let cases = [
            ("one low victim is enough", Pod::test("p").requests("2", "1Gi").priority(10), Ok(("n1".to_string(), vec!["n1-low".to_string()]))),
            ("needs a whole node", Pod::test("p").requests("4", "1Gi").priority(10), Ok(("n1".to_string(), vec!["n1-low".into(), "n1-mid".into()]))),
            ("equal priority cannot preempt", Pod::test("p").requests("2", "1Gi").priority(1),
                Err("preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.".to_string())),
            ("policy Never", {
                let mut p = Pod::test("p").requests("2", "1Gi").priority(10);
                p.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
                p
            }, Err("preemption: not eligible due to preemptionPolicy=Never".to_string())),
        ];
        for (name, pod, want) in cases {
            assert_eq!(run(&cache, pod), want, "{name}");
        }
    }

    #[test]
    fn among_equal_victims_the_node_whose_victims_started_latest_is_chosen() {
        // Each node has one 2-cpu victim of priority 1 (and "n3" one of priority 2, which
        // loses on priority first); only their start times differ.
        let cases = [
            ("the later start wins", [100, 200], "n2"),
            ("whatever the node order", [300, 200], "n1"),
            ("a tie goes to the first node", [200, 200], "n1"),
        ];
        for (name, [t1, t2], want) in cases {
            let cache = cluster(
                vec![
                    Node::test("n1").cpu("2"),
                    Node::test("n2").cpu("2"),
                    Node::test("n3").cpu("2"),
                ],
                vec![
                    Pod::test("v1")
                        .on_node("n1")
                        .requests("2", "1Gi")
                        .priority(1)
                        .started_at(t1),
                    Pod::test("v2")
                        .on_node("n2")
                        .requests("2", "1Gi")
                        .priority(1)
                        .started_at(t2),
                    Pod::test("v3")
                        .on_node("n3")
                        .requests("2", "1Gi")
                        .priority(2)
                        .started_at(1000),
                ],
            );
            let got =
                run(&cache, Pod::test("p").requests("2", "1Gi").priority(10)).map(|(node, _)| node);
            assert_eq!(got.as_deref(), Ok(want), "{name}");
        }
    }

    #[test]
    fn victims_that_repel_the_pod_or_skew_its_spread_are_evicted_too() {
        const ZONE: &str = "topology.kubernetes.io/zone";
        const HOST: &str = "kubernetes.io/hostname";
        let node = |n: &str, zone: &str| Node::test(n).cpu("4").label(ZONE, zone).label(HOST, n);
        let cases = [
            (
                "a low-priority pod the preemptor's anti-affinity rejects",
                vec![node("n1", "a")],
                vec![Pod::test("rival").on_node("n1").label("app", "rival").priority(1)],
                Pod::test("p").anti_affinity_to("app", "rival", HOST).priority(10),
                Ok(("n1".to_string(), vec!["rival".to_string()])),
            ),
            (
                "a low-priority pod whose anti-affinity rejects the preemptor",
                vec![node("n1", "a")],
                vec![Pod::test("hermit").on_node("n1").label("app", "hermit").anti_affinity_to("app", "web", HOST).priority(1)],
                Pod::test("p").label("app", "web").priority(10),
                Ok(("n1".to_string(), vec!["hermit".to_string()])),
            ),
            (
                "spread: evicting one of zone a's pods brings its skew within 1",
                // b1's taint keeps the pod off it but not out of the spread's domains
                // (nodeTaintsPolicy Ignore): a=2, b=1, so a1 gives 2+1-1 > 1. Without
                // both web pods a=0; w1 is reprieved (a=1: 1+1-1 fits), w2 is not.
                vec![node("a1", "a"), node("b1", "b").taint("dedicated", "x", "NoSchedule")],
                vec![
                    Pod::test("w1").on_node("a1").label("app", "web").priority(1),
                    Pod::test("w2").on_node("a1").label("app", "web").priority(1),
                    Pod::test("w3").on_node("b1").label("app", "web").priority(5),
                ],
                Pod::test("p").label("app", "web").spread(1, ZONE, "DoNotSchedule", "app", "web").priority(10),
                Ok(("a1".to_string(), vec!["w2".to_string()])),
            ),
            (
                "a higher-priority rival cannot be evicted",
                vec![node("n1", "a")],
                vec![Pod::test("rival").on_node("n1").label("app", "rival").priority(20)],
                Pod::test("p").anti_affinity_to("app", "rival", HOST).priority(10),
                Err("preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_string()),
            ),
        ];
        for (name, nodes, pods, incoming, want) in cases {
            let cache = cluster(nodes, pods);
            assert_eq!(run(&cache, incoming), want, "{name}");
        }
    }

    fn pdb(app: &str, allowed: i32) -> Pdb {
        Pdb {
            namespace: "default".into(),
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            allowed,
            disrupted: vec![],
        }
    }

    #[test]
    fn prefers_victims_whose_eviction_no_pdb_forbids() {
        let nodes = || vec![Node::test("guarded").cpu("2"), Node::test("free").cpu("2")];
        let pods = || {
            vec![
                // The lower priority would make "guarded" the cheaper node without PDBs.
                Pod::test("db")
                    .on_node("guarded")
                    .requests("2", "1Gi")
                    .priority(1)
                    .label("app", "db"),
                Pod::test("web")
                    .on_node("free")
                    .requests("2", "1Gi")
                    .priority(2)
                    .label("app", "web"),
            ]
        };
        let incoming = || Pod::test("p").requests("2", "1Gi").priority(10);
        let cases = [
            ("no PDB: lowest priority victim", vec![], "guarded"),
            (
                "db PDB allows one disruption",
                vec![pdb("db", 1)],
                "guarded",
            ),
            ("db PDB allows none: spare it", vec![pdb("db", 0)], "free"),
            (
                "both exhausted: back to priorities",
                vec![pdb("db", 0), pdb("web", 0)],
                "guarded",
            ),
            (
                "an empty selector protects nothing",
                vec![Pdb {
                    selector: Some(LabelSelector::default()),
                    ..pdb("", 0)
                }],
                "guarded",
            ),
        ];
        for (name, pdbs, want) in cases {
            let mut cache = cluster(nodes(), pods());
            for (i, p) in pdbs.into_iter().enumerate() {
                cache.set_pdb(format!("default/pdb{i}"), Some(p));
            }
            let got = run(&cache, incoming()).map(|(node, _)| node);
            assert_eq!(got.as_deref(), Ok(want), "{name}");
        }
    }

    #[test]
    fn pdb_split_spends_allowed_disruptions_in_order() {
        let info = |name: &str| {
            Arc::new(PodInfo::new(Arc::new(
                Pod::test(name).label("app", "db").into(),
            )))
        };
        let mut already = pdb("db", 1);
        already.disrupted = vec!["a".into()];
        let cases = [
            ("three allowed", pdb("db", 3), vec![], 3),
            (
                "two allowed: the third violates",
                pdb("db", 2),
                vec!["c"],
                2,
            ),
            (
                "one allowed: the rest violate",
                pdb("db", 1),
                vec!["b", "c"],
                1,
            ),
            (
                "already disrupted pods spend nothing",
                already,
                vec!["c"],
                2,
            ),
        ];
        for (name, budget, want_violating, want_fine) in cases {
            let (violating, fine) = split_by_pdb(vec![info("a"), info("b"), info("c")], &[budget]);
            let names: Vec<&str> = violating.iter().map(|p| p.name.as_str()).collect();
            let want: Vec<&str> = want_violating;
            assert_eq!((names, fine.len()), (want, want_fine), "{name}");
        }
    }
}
