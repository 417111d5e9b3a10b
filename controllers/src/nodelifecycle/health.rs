//! Node health (upstream monitorNodeHealth / tryUpdateNodeHealth): a node is healthy
//! while its kubelet keeps proving it is alive, by renewing its Lease in kube-node-lease
//! or posting a new Ready heartbeat. Like upstream, the controller times each proof by
//! its own clock when it notices it (not by the timestamps in the objects, which come
//! from another machine's clock), and a node gets a full grace period from the moment
//! the controller first sees it.

use std::collections::HashMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The conditions a silent node has set to Unknown, as upstream.
pub(super) const WATCHED_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub(super) const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub(super) const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// What proves a node alive: its Ready heartbeat time and its Lease's renew time. Any
/// change to either is a new proof.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    pub ready_heartbeat: Option<Timestamp>,
    pub lease_renewed: Option<Timestamp>,
}

impl Heartbeat {
    pub fn of(node: &Node, lease: Option<&Lease>) -> Self {
        Heartbeat {
            ready_heartbeat: condition(node, "Ready")
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0),
            lease_renewed: lease
                .and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
                .map(|t| t.0),
        }
    }
}

/// When the controller last saw each node prove it is alive.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: HashMap<String, (Heartbeat, Timestamp)>,
}

impl Tracker {
    /// Notes `heartbeat` of `node` at `now`; returns when it last changed.
    pub fn observe(&mut self, node: &str, heartbeat: Heartbeat, now: Timestamp) -> Timestamp {
        let entry = self
            .seen
            .entry(node.to_string())
            .or_insert_with(|| (heartbeat.clone(), now));
        if entry.0 != heartbeat {
            *entry = (heartbeat, now);
        }
        entry.1
    }

    /// Whether the node has been observed since this loop started.
    pub fn knows(&self, node: &str) -> bool {
        self.seen.contains_key(node)
    }

    /// Forgets nodes no longer present.
    pub fn retain(&mut self, present: impl Fn(&str) -> bool) {
        self.seen.retain(|name, _| present(name));
    }
}

/// Whether a node last heard from at `probed` is silent at `now`: `grace` has passed.
pub fn is_silent(probed: Timestamp, now: Timestamp, grace: std::time::Duration) -> bool {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    now.duration_since(probed) > grace
}

pub(super) fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The Ready condition's status ("True", "False", "Unknown"); Unknown when missing.
pub(super) fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

/// The conditions of a silent node: the watched ones Unknown (reason NodeStatusUnknown,
/// or NodeStatusNeverUpdated for one the kubelet never posted), the rest as they were.
/// `None` when they already say so.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(REASON_UNKNOWN.into());
                c.message = Some(MESSAGE_UNKNOWN.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn beat(lease: i64) -> Heartbeat {
        Heartbeat {
            ready_heartbeat: Some(at(0)),
            lease_renewed: Some(at(lease)),
        }
    }

    #[test]
    fn a_node_is_silent_once_its_lease_went_unrenewed_for_the_grace_period() {
        let grace = Duration::from_secs(40);
        // (name, (controller time, lease renewTime) seen, now, silent?)
        type Case = (&'static str, &'static [(i64, i64)], i64, bool);
        let cases: [Case; 5] = [
            ("just seen", &[(0, 0)], 10, false),
            ("renewed recently", &[(0, 0), (30, 30)], 60, false),
            ("exactly the grace period", &[(0, 0)], 40, false),
            ("renewals stopped", &[(0, 0), (10, 10)], 51, true),
            (
                "the same renewal seen again is no proof",
                &[(0, 0), (30, 0)],
                41,
                true,
            ),
        ];
        for (name, seen, now, want) in cases {
            let mut t = Tracker::default();
            let mut probed = at(0);
            for (when, renewed) in seen {
                probed = t.observe("n", beat(*renewed), at(*when));
            }
            assert_eq!(is_silent(probed, at(now), grace), want, "{name}");
        }
    }

    #[test]
    fn a_silent_node_has_its_conditions_set_to_unknown() {
        let ready = NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_heartbeat_time: Some(Time(at(0))),
            ..Default::default()
        };
        let node = Node {
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                conditions: Some(vec![ready]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let conditions = unknown_conditions(&node, at(50)).expect("a change");
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time(at(0))),
            "the last heartbeat is kept"
        );
        let memory = conditions
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(
            (memory.status.as_str(), memory.reason.as_deref()),
            ("Unknown", Some("NodeStatusNeverUpdated"))
        );
        let node = Node {
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                conditions: Some(conditions),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(unknown_conditions(&node, at(60)), None, "already unknown");
    }
}
