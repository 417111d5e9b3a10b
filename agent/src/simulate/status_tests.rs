//! Unit tests of the pure pod status builders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

/// Fixture builder: `pod().restart("Never").annotate(EXIT_CODE_ANNOTATION, "3")`.
struct TestPod(Pod);

fn pod() -> TestPod {
    TestPod(Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("sim-1".into()),
            containers: vec![
                Container {
                    name: "app".into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                },
                Container {
                    name: "side".into(),
                    image: Some("nginx".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        status: None,
    })
}

impl TestPod {
    fn restart(mut self, policy: &str) -> Self {
        self.0.spec.as_mut().unwrap().restart_policy = Some(policy.into());
        self
    }
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }
    fn with_init(mut self, name: &str) -> Self {
        let c = Container {
            name: name.into(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        self.0
            .spec
            .as_mut()
            .unwrap()
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(c);
        self
    }
}

fn addresses() -> Addresses {
    Addresses {
        host_ip: "10.255.0.2".into(),
        pod_ip: "10.42.1.2".into(),
    }
}

fn time(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

fn cond<'a>(status: &'a PodStatus, t: &str) -> &'a PodCondition {
    status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} condition"))
}

#[test]
fn a_plain_pod_runs_and_is_ready_with_every_container_started() {
    let s = desired_status(&pod().0, &addresses(), &time(1000));
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.1.2"));
    assert_eq!(s.host_ip.as_deref(), Some("10.255.0.2"));
    assert_eq!(s.start_time, Some(time(1000)));
    let types: Vec<&str> = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled"
        ]
    );
    for c in s.conditions.as_ref().unwrap() {
        assert_eq!(c.status, "True", "{}", c.type_);
        assert_eq!(c.last_transition_time, Some(time(1000)), "{}", c.type_);
    }
    let containers = s.container_statuses.as_ref().unwrap();
    assert_eq!(containers.len(), 2);
    for c in containers {
        assert!(
            c.ready && c.started == Some(true) && c.restart_count == 0,
            "{}",
            c.name
        );
        assert!(
            c.container_id
                .as_deref()
                .unwrap()
                .starts_with("simulated://"),
            "{}",
            c.name
        );
        assert!(c.image_id.contains("@sha256:"), "{}", c.name);
        let running = c.state.as_ref().unwrap().running.as_ref().unwrap();
        assert_eq!(running.started_at, Some(time(1000)), "{}", c.name);
    }
    assert_eq!(containers[1].image, "nginx");
    assert_ne!(containers[0].container_id, containers[1].container_id);
    assert!(s.init_container_statuses.is_none());
}

#[test]
fn rebuilding_the_status_of_a_reported_pod_changes_nothing() {
    let mut p = pod().with_init("setup").0;
    let first = desired_status(&p, &addresses(), &time(1000));
    p.status = Some(first.clone());
    let again = desired_status(&p, &addresses(), &time(2000));
    assert_eq!(again, first);
    assert!(!needs_update(Some(&first), &again));
    assert!(needs_update(None, &again));
}

#[test]
fn extra_fields_in_the_current_status_do_not_count_as_a_change() {
    let desired = desired_status(&pod().0, &addresses(), &time(1000));
    let mut current = desired.clone();
    current.qos_class = Some("BestEffort".into());
    assert!(!needs_update(Some(&current), &desired));
    current.pod_ip = Some("10.42.1.3".into());
    assert!(needs_update(Some(&current), &desired));
}

#[test]
fn init_containers_are_reported_completed() {
    let s = desired_status(&pod().with_init("setup").0, &addresses(), &time(1000));
    let init = &s.init_container_statuses.unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(init.started, Some(false));
    assert!(init.ready);
}

#[test]
fn the_ready_false_annotation_runs_the_pod_without_readiness() {
    let s = desired_status(
        &pod().annotate(READY_ANNOTATION, "false").0,
        &addresses(),
        &time(1000),
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for t in ["Ready", "ContainersReady"] {
        let c = cond(&s, t);
        assert_eq!(c.status, "False", "{t}");
        assert_eq!(c.reason.as_deref(), Some("ContainersNotReady"), "{t}");
        assert_eq!(
            c.message.as_deref(),
            Some("containers with unready status: [app side]"),
            "{t}"
        );
    }
    assert!(s
        .container_statuses
        .unwrap()
        .iter()
        .all(|c| !c.ready && c.started == Some(true)));
}

#[test]
fn the_exit_code_annotation_follows_the_restart_policy() {
    struct Case {
        name: &'static str,
        policy: &'static str,
        code: &'static str,
        phase: &'static str,
        restarts: i32,
    }
    let cases = [
        Case {
            name: "never_zero",
            policy: "Never",
            code: "0",
            phase: "Succeeded",
            restarts: 0,
        },
        Case {
            name: "never_nonzero",
            policy: "Never",
            code: "3",
            phase: "Failed",
            restarts: 0,
        },
        Case {
            name: "onfailure_zero",
            policy: "OnFailure",
            code: "0",
            phase: "Succeeded",
            restarts: 0,
        },
        Case {
            name: "onfailure_nonzero",
            policy: "OnFailure",
            code: "3",
            phase: "Running",
            restarts: 1,
        },
        Case {
            name: "always_zero",
            policy: "Always",
            code: "0",
            phase: "Running",
            restarts: 1,
        },
        Case {
            name: "always_nonzero",
            policy: "Always",
            code: "3",
            phase: "Running",
            restarts: 1,
        },
    ];
    for case in cases {
        let p = pod()
            .restart(case.policy)
            .annotate(EXIT_CODE_ANNOTATION, case.code)
            .0;
        let s = desired_status(&p, &addresses(), &time(1000));
        assert_eq!(s.phase.as_deref(), Some(case.phase), "{}", case.name);
        let code: i32 = case.code.parse().unwrap();
        for c in s.container_statuses.as_ref().unwrap() {
            assert_eq!(c.restart_count, case.restarts, "{}", case.name);
            let state = c.state.as_ref().unwrap();
            let ended = if case.restarts == 0 {
                state.terminated.as_ref()
            } else {
                assert!(state.running.is_some(), "{}", case.name);
                c.last_state.as_ref().unwrap().terminated.as_ref()
            };
            let ended = ended.unwrap_or_else(|| panic!("{}: no terminated state", case.name));
            assert_eq!(ended.exit_code, code, "{}", case.name);
            assert_eq!(
                ended.reason.as_deref(),
                Some(if code == 0 { "Completed" } else { "Error" }),
                "{}",
                case.name
            );
        }
        let ready = cond(&s, "Ready");
        assert_eq!(
            ready.status == "True",
            case.phase == "Running",
            "{}",
            case.name
        );
        if case.phase == "Succeeded" {
            assert_eq!(
                ready.reason.as_deref(),
                Some("PodCompleted"),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let mut p = pod().0;
    p.status = Some(desired_status(&p, &addresses(), &time(1000)));
    p.metadata.annotations = Some([(READY_ANNOTATION.to_string(), "false".to_string())].into());
    let s = desired_status(&p, &addresses(), &time(2000));
    assert_eq!(cond(&s, "Ready").last_transition_time, Some(time(2000)));
    assert_eq!(
        cond(&s, "Initialized").last_transition_time,
        Some(time(1000))
    );
}

#[test]
fn a_deleted_pod_is_removed_after_its_grace_period_but_no_later_than_the_cap() {
    let cap = Duration::from_secs(2);
    let deleting = |grace: i64, requested: i64| {
        let mut p = pod().0;
        p.metadata.deletion_timestamp = Some(time(requested + grace));
        p.metadata.deletion_grace_period_seconds = Some(grace);
        p
    };
    let at = |s: i64| Timestamp::from_second(s).unwrap();
    assert_eq!(termination_delay(&pod().0, at(100), cap), None);
    assert_eq!(
        termination_delay(&deleting(1, 100), at(100), cap),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        termination_delay(&deleting(30, 100), at(100), cap),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        termination_delay(&deleting(30, 100), at(105), cap),
        Some(Duration::ZERO)
    );
    assert_eq!(
        termination_delay(&deleting(0, 100), at(100), cap),
        Some(Duration::ZERO)
    );
}
