//! Table tests of the StatefulSet's plan: what it creates and deletes next under each
//! pod management policy and update strategy, and the status it reports.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::fixtures::*;
use super::plan::{plan, revision_for_new, Revision, Step, Why};

fn now() -> Timestamp {
    Timestamp::from_second(100).unwrap()
}

/// The plan's steps as short sentences: "create web-1 (update)", "delete web-2 (scale down)".
fn described(set: &StatefulSet, pods: &[Pod]) -> Vec<String> {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(set, "v1", "v2", &refs, now())
        .steps
        .iter()
        .map(|s| match s {
            Step::Create { ordinal, revision } => {
                let r = if *revision == Revision::Current {
                    "current"
                } else {
                    "update"
                };
                format!("create web-{ordinal} ({r})")
            }
            Step::Delete { name, why, .. } => {
                let w = match why {
                    Why::Finished => "finished",
                    Why::ScaleDown => "scale down",
                    Why::Update => "update",
                };
                format!("delete {name} ({w})")
            }
            Step::Relabel { name } => format!("relabel {name}"),
        })
        .collect()
}

fn ready(name: &str, rev: &str) -> Pod {
    member(name, rev).ready()
}

fn pending(name: &str, rev: &str) -> Pod {
    member(name, rev)
}

#[test]
fn scaling_creates_and_deletes_ordinals_in_policy_order() {
    let cases: Vec<(&str, StatefulSet, Vec<Pod>, Vec<&str>)> = vec![
        (
            "ordered: an empty set creates ordinal 0 only",
            stateful_set(3),
            vec![],
            vec!["create web-0 (update)"],
        ),
        (
            "ordered: waits for a pending predecessor",
            stateful_set(3),
            vec![pending("web-0", "v2")],
            vec![],
        ),
        (
            "ordered: the next ordinal once predecessors are running and ready",
            stateful_set(3),
            vec![ready("web-0", "v2")],
            vec!["create web-1 (update)"],
        ),
        (
            "ordered: a gap is filled first",
            stateful_set(3),
            vec![ready("web-0", "v2"), ready("web-2", "v2")],
            vec!["create web-1 (update)"],
        ),
        (
            "ordered: a ready pod not yet available for minReadySeconds blocks",
            stateful_set(2).min_ready(60),
            vec![member("web-0", "v2").ready_since(90)],
            vec![],
        ),
        (
            "parallel: every missing ordinal at once",
            stateful_set(3).parallel(),
            vec![],
            vec![
                "create web-0 (update)",
                "create web-1 (update)",
                "create web-2 (update)",
            ],
        ),
        (
            "parallel: pending pods do not block",
            stateful_set(3).parallel(),
            vec![pending("web-0", "v2")],
            vec!["create web-1 (update)", "create web-2 (update)"],
        ),
        (
            "ordered: scale down from the highest ordinal, one at a time",
            stateful_set(1),
            vec![
                ready("web-0", "v2"),
                ready("web-1", "v2"),
                ready("web-2", "v2"),
            ],
            vec!["delete web-2 (scale down)"],
        ),
        (
            "ordered: a terminating pod is waited for",
            stateful_set(1),
            vec![
                ready("web-0", "v2"),
                ready("web-1", "v2"),
                ready("web-2", "v2").deleting(),
            ],
            vec![],
        ),
        (
            "ordered: no scale down while a kept replica is unhealthy",
            stateful_set(1),
            vec![pending("web-0", "v2"), ready("web-1", "v2")],
            vec![],
        ),
        (
            "ordered: the first unhealthy condemned pod may go",
            stateful_set(1),
            vec![
                ready("web-0", "v2"),
                ready("web-1", "v2"),
                pending("web-2", "v2"),
            ],
            vec!["delete web-2 (scale down)"],
        ),
        (
            "ordered: an unhealthy condemned pod below the highest blocks it",
            stateful_set(1),
            vec![
                ready("web-0", "v2"),
                pending("web-1", "v2"),
                pending("web-2", "v2"),
            ],
            vec![],
        ),
        (
            "parallel: every condemned pod at once, highest first",
            stateful_set(1).parallel(),
            vec![
                ready("web-0", "v2"),
                pending("web-1", "v2"),
                ready("web-2", "v2"),
            ],
            vec!["delete web-2 (scale down)", "delete web-1 (scale down)"],
        ),
        (
            "a failed pod is deleted, to be recreated once gone",
            stateful_set(2),
            vec![member("web-0", "v2").phase("Failed")],
            vec!["delete web-0 (finished)"],
        ),
        (
            "a deleted failed pod is waited for",
            stateful_set(2),
            vec![member("web-0", "v2").phase("Failed").deleting()],
            vec![],
        ),
        (
            "a member without its pod-name label is relabelled",
            stateful_set(1),
            vec![ready("web-0", "v2")
                .labelled(&[("app", "web"), ("controller-revision-hash", "v2")])],
            vec!["relabel web-0"],
        ),
        (
            "ordinals.start shifts the ordinals",
            {
                let mut s = stateful_set(2);
                s.spec.as_mut().unwrap().ordinals =
                    Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) });
                s
            },
            vec![ready("web-5", "v2"), ready("web-0", "v2")],
            vec!["create web-6 (update)"],
        ),
        (
            "a set being deleted does nothing",
            {
                let mut s = stateful_set(2);
                s.metadata.deletion_timestamp = Some(at(1));
                s
            },
            vec![],
            vec![],
        ),
    ];
    for (name, set, pods, want) in cases {
        assert_eq!(described(&set, &pods), want, "{name}");
    }
}

#[test]
fn rolling_updates_go_from_the_highest_ordinal_down_to_the_partition() {
    let old3 = || {
        vec![
            ready("web-0", "v1"),
            ready("web-1", "v1"),
            ready("web-2", "v1"),
        ]
    };
    let cases: Vec<(&str, StatefulSet, Vec<Pod>, Vec<&str>)> = vec![
        (
            "the highest ordinal first",
            stateful_set(3),
            old3(),
            vec!["delete web-2 (update)"],
        ),
        (
            "waits for the replacement to be ready",
            stateful_set(3).parallel(),
            vec![
                ready("web-0", "v1"),
                ready("web-1", "v1"),
                pending("web-2", "v2"),
            ],
            vec![],
        ),
        (
            "then the next lower ordinal",
            stateful_set(3),
            vec![
                ready("web-0", "v1"),
                ready("web-1", "v1"),
                ready("web-2", "v2"),
            ],
            vec!["delete web-1 (update)"],
        ),
        (
            "ordinals below the partition are left alone",
            stateful_set(3).partition(2),
            vec![
                ready("web-0", "v1"),
                ready("web-1", "v1"),
                ready("web-2", "v2"),
            ],
            vec![],
        ),
        (
            "ordinals at the partition are updated",
            stateful_set(3).partition(2),
            old3(),
            vec!["delete web-2 (update)"],
        ),
        (
            "OnDelete never deletes for an update",
            stateful_set(3).on_delete(),
            old3(),
            vec![],
        ),
        (
            "maxUnavailable 2 replaces two at once",
            stateful_set(3).max_unavailable(IntOrString::Int(2)),
            old3(),
            vec!["delete web-2 (update)", "delete web-1 (update)"],
        ),
        (
            "maxUnavailable counts pods already unavailable",
            stateful_set(3)
                .parallel()
                .max_unavailable(IntOrString::Int(2)),
            vec![
                ready("web-0", "v1"),
                ready("web-1", "v1"),
                pending("web-2", "v2"),
            ],
            vec!["delete web-1 (update)"],
        ),
        (
            "maxUnavailable as a percentage rounds down but is at least one",
            stateful_set(3).max_unavailable(IntOrString::String("10%".into())),
            old3(),
            vec!["delete web-2 (update)"],
        ),
        (
            "scaling takes precedence over updating",
            stateful_set(2),
            old3(),
            vec!["delete web-2 (scale down)"],
        ),
    ];
    for (name, set, pods, want) in cases {
        assert_eq!(described(&set, &pods), want, "{name}");
    }
}

#[test]
fn new_pods_below_the_partition_keep_the_current_revision() {
    let cases = [
        (
            "below the partition",
            stateful_set(3).partition(2),
            1,
            Revision::Current,
        ),
        (
            "at the partition",
            stateful_set(3).partition(2),
            2,
            Revision::Update,
        ),
        ("no partition", stateful_set(3), 0, Revision::Update),
        (
            "OnDelete recreates from the update revision",
            stateful_set(3).on_delete(),
            0,
            Revision::Update,
        ),
    ];
    for (name, set, ordinal, want) in cases {
        assert_eq!(revision_for_new(&set, ordinal), want, "{name}");
    }
    assert_eq!(
        described(&stateful_set(3).partition(2), &[]),
        vec!["create web-0 (current)"],
        "a recreated low ordinal comes back on the current revision"
    );
}

#[test]
fn status_counts_pods_per_revision_and_completes_rollouts() {
    let set = stateful_set(3).min_ready(30);
    let mid = [
        ready("web-0", "v1"),
        member("web-1", "v2").ready_since(90),
        pending("web-2", "v2"),
    ];
    let done = [
        ready("web-0", "v2"),
        ready("web-1", "v2"),
        ready("web-2", "v2"),
    ];
    let status = |pods: &[Pod]| {
        let refs: Vec<&Pod> = pods.iter().collect();
        plan(&set, "v1", "v2", &refs, now()).status
    };
    let s = status(&mid);
    let got = (
        s.replicas,
        s.ready_replicas,
        s.available_replicas,
        s.current_replicas,
        s.updated_replicas,
    );
    assert_eq!(
        got,
        (3, Some(2), Some(1), Some(1), Some(2)),
        "mid-rollout counts"
    );
    assert_eq!(
        s.current_revision.as_deref(),
        Some("v1"),
        "mid-rollout current revision"
    );
    let s = status(&done);
    assert_eq!(
        s.current_revision.as_deref(),
        Some("v2"),
        "a finished rollout makes v2 current"
    );
    assert_eq!(s.current_replicas, Some(3));
    assert_eq!(s.observed_generation, Some(1));
}
