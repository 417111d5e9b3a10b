//! Default preemption (upstream's PostFilter): for a pod no node fits, find nodes where
//! evicting lower-priority pods makes it fit, keep as few victims as possible (reprieve
//! the highest-priority ones first), and pick the node whose victims matter least.
//!
//! Simplifications, stated: PodDisruptionBudgets are not consulted, and the
//! cluster-wide plugin state (inter-pod affinity, topology spread) is not recomputed
//! without the victims.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{Cache, PodInfo};
use super::framework::{fit_error_message, run_filters, Code, CycleState, Status};

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The chosen node and the pods to evict from it.
#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Either a candidate or the message for the FailedScheduling event ("preemption: …").
pub fn preempt(
    state: &CycleState,
    cache: &Cache,
    filter: &HashMap<String, Status>,
) -> Result<Candidate, String> {
    let pod = &state.pod;
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never".into());
    }
    // A pod that already preempted waits while its victims terminate.
    let nominated = pod
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    if let Some(node) = nominated.and_then(|n| cache.node(n)) {
        let terminating = node
            .pods
            .iter()
            .any(|p| p.priority < pod.priority && p.pod.metadata.deletion_timestamp.is_some());
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
        }
        if let Err(s) = run_filters(state, &trial) {
            statuses.insert(node.name.clone(), s);
            continue;
        }
        // Reprieve from the highest priority down: add each back if the pod still fits.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = vec![];
        for p in lower {
            trial.add_pod(p.clone());
            if run_filters(state, &trial).is_err() {
                trial.remove_pod(&p.uid);
                victims.push(p);
            }
        }
        candidates.push(Candidate {
            node: node.name.clone(),
            victims,
        });
    }
    // Fewest important victims: lowest top priority, then lowest priority sum, then fewest.
    candidates
        .into_iter()
        .min_by_key(|c| {
            let top = c
                .victims
                .iter()
                .map(|v| v.priority)
                .max()
                .unwrap_or(i32::MIN);
            let sum: i64 = c.victims.iter().map(|v| v.priority as i64).sum();
            (top, sum, c.victims.len())
        })
        .ok_or_else(|| {
            format!(
                "preemption: {}",
                fit_error_message(cache.nodes().len(), &statuses, "")
            )
        })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::scheduler::config::SchedulerConfig;
    use crate::scheduler::filters::test_support::{cluster, state};
    use crate::scheduler::schedule_one::schedule;
    use crate::scheduler::testing::{NodeFixture, PodFixture};

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
}
