//! Taint-based eviction (upstream's taint-eviction controller, once NoExecuteTaintManager):
//! a pod on a node with a NoExecute taint it does not tolerate is deleted at once; one
//! that tolerates every such taint stays, for ever or for the least tolerationSeconds of
//! the tolerations it relies on, counted from when the taint was added.

use k8s_openapi::api::core::v1::{Pod, Taint};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::shared::scheduling::tolerates;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Eviction {
    /// Every NoExecute taint is tolerated without a time limit.
    Never,
    Now,
    At(Timestamp),
}

/// When `pod` must leave a node with `taints`; a taint without `timeAdded` counts from
/// `first_seen` (when the controller first saw the pod under it).
pub fn eviction(pod: &Pod, taints: &[Taint], first_seen: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut due: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        // Upstream uses the first toleration that tolerates each taint.
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        let since = taint.time_added.as_ref().map_or(first_seen, |t| t.0);
        let at = since
            .saturating_add(SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(since);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due.map_or(Eviction::Never, Eviction::At)
}

/// Whether `pod` is on the node and still to be judged: not already being deleted.
pub(super) fn is_evictable(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).unwrap()
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| Time(at(s))),
        }
    }

    fn tolerating(tolerations: &[(&str, Option<i64>)]) -> Pod {
        let tolerations = tolerations
            .iter()
            .map(|(key, secs)| Toleration {
                key: (!key.is_empty()).then(|| key.to_string()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: *secs,
                ..Default::default()
            })
            .collect();
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pods_leave_tainted_nodes_as_their_tolerations_allow() {
        let unreachable = "node.kubernetes.io/unreachable";
        let cases = [
            (
                "no NoExecute taint",
                tolerating(&[]),
                vec![taint(unreachable, "NoSchedule", Some(0))],
                Eviction::Never,
            ),
            (
                "not tolerated",
                tolerating(&[]),
                vec![taint(unreachable, "NoExecute", Some(0))],
                Eviction::Now,
            ),
            (
                "tolerated for ever",
                tolerating(&[(unreachable, None)]),
                vec![taint(unreachable, "NoExecute", Some(0))],
                Eviction::Never,
            ),
            (
                "tolerated for 300 s",
                tolerating(&[(unreachable, Some(300))]),
                vec![taint(unreachable, "NoExecute", Some(10))],
                Eviction::At(at(310)),
            ),
            (
                "counted from first sight without timeAdded",
                tolerating(&[(unreachable, Some(5))]),
                vec![taint(unreachable, "NoExecute", None)],
                Eviction::At(at(105)),
            ),
            (
                "negative seconds mean now",
                tolerating(&[(unreachable, Some(-1))]),
                vec![taint(unreachable, "NoExecute", Some(0))],
                Eviction::At(at(0)),
            ),
            (
                "the shortest limit wins",
                tolerating(&[(unreachable, Some(300)), ("", Some(60))]),
                vec![
                    taint(unreachable, "NoExecute", Some(0)),
                    taint("other", "NoExecute", Some(0)),
                ],
                Eviction::At(at(60)),
            ),
            (
                "one taint not tolerated",
                tolerating(&[(unreachable, None)]),
                vec![
                    taint(unreachable, "NoExecute", Some(0)),
                    taint("other", "NoExecute", Some(0)),
                ],
                Eviction::Now,
            ),
        ];
        for (name, pod, taints, want) in cases {
            assert_eq!(eviction(&pod, &taints, at(100)), want, "{name}");
        }
    }
}
