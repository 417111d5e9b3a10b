//! The taints the controller keeps on nodes (upstream doNoScheduleTaintingPass and
//! doNoExecuteTaintingPass): NoSchedule taints mirroring the node's conditions, and the
//! NoExecute `not-ready`/`unreachable` taint that starts evicting its pods. Taints with
//! other keys or effects belong to someone else and are kept as they are.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::health::condition;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub(super) const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// (condition, status, taint key): upstream's nodeConditionToTaintKeyStatusMap.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

fn taint(key: &str, effect: &str, now: Timestamp) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: Some(Time(now)),
    }
}

/// The NoSchedule taint keys the node's conditions (and spec.unschedulable) call for.
/// A node that never posted a Ready condition has none to mirror yet, as upstream: it is
/// tainted once the grace period has passed and the health pass set its conditions
/// Unknown (NodeStatusNeverUpdated). Until then the scheduler's own readiness check keeps
/// pods off it, and an agent that registers and reports Ready within the grace period
/// never sees an unreachable taint.
pub(super) fn no_schedule_keys(node: &Node) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, status, _)| condition(node, type_).is_some_and(|c| c.status == *status))
        .map(|(_, _, key)| *key)
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The NoExecute taint key the node's readiness calls for: none while Ready, nor before
/// it has a Ready condition at all.
pub(super) fn no_execute_key(node: &Node) -> Option<&'static str> {
    match condition(node, "Ready")?.status.as_str() {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

/// The taints a node should have. `may_add_no_execute` is the eviction rate limiter's
/// answer: without it a missing NoExecute taint is not added (yet), and one being
/// swapped (unreachable -> not-ready) stays as it is. NoSchedule taints and removals
/// are never held back.
pub fn desired_taints(node: &Node, may_add_no_execute: bool, now: Timestamp) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint, effect: &str| {
        t.effect == effect
            && (CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key)
                || (effect == "NoSchedule" && t.key == UNSCHEDULABLE))
    };
    let no_schedule = no_schedule_keys(node);
    let no_execute = no_execute_key(node);
    let has_no_execute = no_execute.is_some_and(|k| {
        current
            .iter()
            .any(|t| t.key == k && t.effect == "NoExecute")
    });
    let hold_no_execute = no_execute.is_some() && !has_no_execute && !may_add_no_execute;

    let mut taints: Vec<Taint> = current
        .into_iter()
        .filter(|t| {
            if managed(t, "NoSchedule") {
                no_schedule.contains(&t.key.as_str())
            } else if t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE) {
                hold_no_execute || Some(t.key.as_str()) == no_execute
            } else {
                true
            }
        })
        .collect();
    for key in no_schedule {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(taint(key, "NoSchedule", now));
        }
    }
    if let Some(key) = no_execute.filter(|_| !has_no_execute && may_add_no_execute) {
        taints.push(taint(key, "NoExecute", now));
    }
    taints
}

/// Whether `node` is waiting for a NoExecute taint (so the rate limiter is asked).
pub(super) fn needs_no_execute(node: &Node) -> bool {
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    no_execute_key(node)
        .is_some_and(|k| !taints.iter().any(|t| t.key == k && t.effect == "NoExecute"))
}

/// A token bucket: `rate` tokens a second up to `burst`, starting full. Upstream
/// limits how fast nodes are tainted NoExecute (--node-eviction-rate 0.1, one node
/// every 10 s, burst 1), so a network partition does not empty the cluster at once.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes a token at `now` if one is there.
    pub fn take(&mut self, now: Timestamp) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(ready: &str, taints: &[(&str, &str)]) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        let mut v: Vec<String> = taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = Timestamp::UNIX_EPOCH;
        let never_posted = Node {
            status: None,
            ..node("True", &[])
        };
        let cases: [(&str, Node, bool, Vec<&str>); 8] = [
            ("ready node, no taints", node("True", &[]), true, vec![]),
            (
                "a node that never posted its status yet",
                never_posted,
                true,
                vec![],
            ),
            (
                "unreachable node",
                node("Unknown", &[]),
                true,
                vec![
                    "node.kubernetes.io/unreachable:NoExecute",
                    "node.kubernetes.io/unreachable:NoSchedule",
                ],
            ),
            (
                "unreachable, rate limited",
                node("Unknown", &[]),
                false,
                vec!["node.kubernetes.io/unreachable:NoSchedule"],
            ),
            (
                "not ready node",
                node("False", &[]),
                true,
                vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ],
            ),
            (
                "back to ready: our taints go, others stay",
                node(
                    "True",
                    &[
                        (UNREACHABLE, "NoExecute"),
                        (UNREACHABLE, "NoSchedule"),
                        ("dedicated", "NoSchedule"),
                    ],
                ),
                false,
                vec!["dedicated:NoSchedule"],
            ),
            (
                "unreachable to not ready waits for a token to swap",
                node(
                    "False",
                    &[(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")],
                ),
                false,
                vec![
                    "node.kubernetes.io/not-ready:NoSchedule",
                    "node.kubernetes.io/unreachable:NoExecute",
                ],
            ),
            (
                "unreachable to not ready with a token",
                node("False", &[(UNREACHABLE, "NoExecute")]),
                true,
                vec![
                    "node.kubernetes.io/not-ready:NoExecute",
                    "node.kubernetes.io/not-ready:NoSchedule",
                ],
            ),
        ];
        for (name, node, token, want) in cases {
            assert_eq!(keys(&desired_taints(&node, token, now)), want, "{name}");
        }
    }

    #[test]
    fn pressure_conditions_and_unschedulable_give_no_schedule_taints() {
        let mut n = node("True", &[]);
        n.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(NodeCondition {
                type_: "DiskPressure".into(),
                status: "True".into(),
                ..Default::default()
            });
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        assert_eq!(
            no_schedule_keys(&n),
            vec!["node.kubernetes.io/disk-pressure", UNSCHEDULABLE]
        );
    }

    #[test]
    fn the_eviction_bucket_refills_at_its_rate() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let mut b = TokenBucket::new(0.1, 1);
        let got: Vec<bool> = [0, 1, 5, 10, 11, 25]
            .iter()
            .map(|s| b.take(t(*s)))
            .collect();
        assert_eq!(got, vec![true, false, false, true, false, true]);
    }
}
