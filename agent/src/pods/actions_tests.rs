use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::pods::state::{exit_reason, State, Terminated};

fn ended(code: i32) -> Terminated {
    Terminated {
        exit_code: code,
        reason: exit_reason(code, false).into(),
        message: None,
        started_at: None,
        finished_at: None,
        container_id: Some("containerd://x".into()),
    }
}

fn view(state: State, created: bool) -> ContainerView {
    ContainerView {
        rec: Record {
            state,
            ..Record::new("c", "busybox", "ContainerCreating")
        },
        created,
        probe_restart: None,
        backoff: None,
    }
}

/// Not created yet: waiting for its first run.
fn not_created() -> ContainerView {
    view(State::waiting("ContainerCreating", None), false)
}

fn running() -> ContainerView {
    view(
        State::Running {
            started_at: Time(Timestamp::UNIX_EPOCH),
        },
        true,
    )
}

fn exited(code: i32) -> ContainerView {
    view(State::Terminated(ended(code)), true)
}

/// Waiting in CrashLoopBackOff after a run that exited with `code`.
fn crash_looping(code: i32) -> ContainerView {
    let mut c = view(State::waiting("CrashLoopBackOff", None), true);
    c.rec.last = Some(ended(code));
    c
}

impl ContainerView {
    fn probe_wants_restart(mut self, probe: &'static str) -> Self {
        self.probe_restart = Some(probe);
        self
    }

    fn backing_off(mut self, secs: u64) -> Self {
        self.backoff = Some(Duration::from_secs(secs));
        self
    }
}

struct Row {
    name: &'static str,
    policy: &'static str,
    deleting: bool,
    init: Vec<ContainerView>,
    app: Vec<ContainerView>,
    ephemeral: Vec<ContainerView>,
    want_init: Vec<Action>,
    want_app: Vec<Action>,
    want_ephemeral: Vec<Action>,
    want_init_failed: bool,
    want_phase: &'static str,
}

fn row(name: &'static str, policy: &'static str) -> Row {
    Row {
        name,
        policy,
        deleting: false,
        init: vec![],
        app: vec![],
        ephemeral: vec![],
        want_init: vec![],
        want_app: vec![],
        want_ephemeral: vec![],
        want_init_failed: false,
        want_phase: "Pending",
    }
}

impl Row {
    fn init(mut self, cs: Vec<ContainerView>) -> Self {
        self.init = cs;
        self
    }
    fn app(mut self, cs: Vec<ContainerView>) -> Self {
        self.app = cs;
        self
    }
    fn ephemeral(mut self, cs: Vec<ContainerView>) -> Self {
        self.ephemeral = cs;
        self
    }
    fn wants_ephemeral(mut self, a: Vec<Action>) -> Self {
        self.want_ephemeral = a;
        self
    }
    fn deleting(mut self) -> Self {
        self.deleting = true;
        self
    }
    fn wants_init(mut self, a: Vec<Action>) -> Self {
        self.want_init = a;
        self
    }
    fn wants_app(mut self, a: Vec<Action>) -> Self {
        self.want_app = a;
        self
    }
    fn fails_init(mut self) -> Self {
        self.want_init_failed = true;
        self
    }
    fn phase(mut self, p: &'static str) -> Self {
        self.want_phase = p;
        self
    }
}

use Action::*;

#[test]
fn pod_actions_follow_the_kubelet() {
    let rows = vec![
        row("a container not created yet is started", "Always")
            .app(vec![not_created()])
            .wants_app(vec![Start]),
        row("a running container is left running", "Always")
            .app(vec![running()])
            .wants_app(vec![Keep])
            .phase("Running"),
        row("Always restarts a container that exited 0", "Always")
            .app(vec![exited(0)])
            .wants_app(vec![Restart])
            .phase("Running"),
        row("Always restarts a container that exited non-zero", "Always")
            .app(vec![exited(1)])
            .wants_app(vec![Restart])
            .phase("Running"),
        row(
            "OnFailure restarts a container that exited non-zero",
            "OnFailure",
        )
        .app(vec![exited(2)])
        .wants_app(vec![Restart])
        .phase("Running"),
        row(
            "OnFailure leaves a container that exited 0: Succeeded",
            "OnFailure",
        )
        .app(vec![exited(0)])
        .wants_app(vec![Keep])
        .phase("Succeeded"),
        row("Never leaves a container that exited 0: Succeeded", "Never")
            .app(vec![exited(0)])
            .wants_app(vec![Keep])
            .phase("Succeeded"),
        row(
            "Never leaves a container that exited non-zero: Failed",
            "Never",
        )
        .app(vec![exited(0), exited(3)])
        .wants_app(vec![Keep, Keep])
        .phase("Failed"),
        row("Never with one container still running: Running", "Never")
            .app(vec![exited(0), running()])
            .wants_app(vec![Keep, Keep])
            .phase("Running"),
        row("a restart still in back-off waits it out", "Always")
            .app(vec![exited(1).backing_off(20)])
            .wants_app(vec![BackOff(Duration::from_secs(20))])
            .phase("Running"),
        row(
            "a crash-looping container restarts once its back-off passed",
            "Always",
        )
        .app(vec![crash_looping(1)])
        .wants_app(vec![Restart])
        .phase("Running"),
        row("a first start does not wait for a back-off", "Always")
            .app(vec![not_created().backing_off(20)])
            .wants_app(vec![Start]),
        row(
            "a run that exists and has not ended is not started again",
            "Always",
        )
        .app(vec![view(State::waiting("ContainerCreating", None), true)])
        .wants_app(vec![Keep]),
        row(
            "a failed liveness probe kills the running container",
            "Always",
        )
        .app(vec![running().probe_wants_restart("liveness"), running()])
        .wants_app(vec![Kill("liveness"), Keep])
        .phase("Running"),
        row(
            "a startup probe that gave up kills the running container",
            "Never",
        )
        .app(vec![running().probe_wants_restart("startup")])
        .wants_app(vec![Kill("startup")])
        .phase("Running"),
        row("init containers start one at a time, in order", "Always")
            .init(vec![exited(0), not_created(), not_created()])
            .app(vec![not_created()])
            .wants_init(vec![Keep, Start, Keep])
            .wants_app(vec![WaitForInit]),
        row("a running init container holds back the rest", "Always")
            .init(vec![running(), not_created()])
            .app(vec![not_created()])
            .wants_init(vec![Keep, Keep])
            .wants_app(vec![WaitForInit]),
        row(
            "a failed init container is retried under OnFailure",
            "OnFailure",
        )
        .init(vec![exited(1)])
        .app(vec![not_created()])
        .wants_init(vec![Restart])
        .wants_app(vec![WaitForInit]),
        row("a failed init container is retried under Always", "Always")
            .init(vec![exited(1)])
            .app(vec![not_created()])
            .wants_init(vec![Restart])
            .wants_app(vec![WaitForInit]),
        row(
            "a failed init container's retry waits out its back-off",
            "Always",
        )
        .init(vec![crash_looping(1).backing_off(10)])
        .app(vec![not_created()])
        .wants_init(vec![BackOff(Duration::from_secs(10))])
        .wants_app(vec![WaitForInit]),
        row("a failed init container under Never fails the pod", "Never")
            .init(vec![exited(1), not_created()])
            .app(vec![not_created()])
            .wants_init(vec![Keep, Keep])
            .wants_app(vec![Keep])
            .fails_init()
            .phase("Failed"),
        row(
            "app containers start once every init container succeeded",
            "Never",
        )
        .init(vec![exited(0), exited(0)])
        .app(vec![not_created(), not_created()])
        .wants_init(vec![Keep, Keep])
        .wants_app(vec![Start, Start]),
        row(
            "an ephemeral container added to a running pod is started",
            "Always",
        )
        .app(vec![running()])
        .ephemeral(vec![not_created()])
        .wants_app(vec![Keep])
        .wants_ephemeral(vec![Start])
        .phase("Running"),
        row(
            "an ephemeral container that exited is not restarted under Always",
            "Always",
        )
        .app(vec![running()])
        .ephemeral(vec![exited(0), exited(1)])
        .wants_app(vec![Keep])
        .wants_ephemeral(vec![Keep, Keep])
        .phase("Running"),
        row(
            "an ephemeral container starts while init containers still run",
            "Always",
        )
        .init(vec![running()])
        .app(vec![not_created()])
        .ephemeral(vec![not_created()])
        .wants_init(vec![Keep])
        .wants_app(vec![WaitForInit])
        .wants_ephemeral(vec![Start]),
        row(
            "a running ephemeral container does not make a finished pod run",
            "Never",
        )
        .app(vec![exited(0)])
        .ephemeral(vec![running()])
        .wants_app(vec![Keep])
        .wants_ephemeral(vec![Keep])
        .phase("Succeeded"),
    ];
    for r in rows {
        let got = compute_pod_actions(&PodView {
            restart_policy: r.policy.into(),
            deleting: r.deleting,
            init_failed_for_good: false,
            init: r.init,
            app: r.app,
            ephemeral: r.ephemeral,
        });
        let name = r.name;
        assert!(!got.terminate, "{name}: terminates");
        assert_eq!(got.init, r.want_init, "{name}: init containers");
        assert_eq!(got.app, r.want_app, "{name}: containers");
        assert_eq!(
            got.ephemeral, r.want_ephemeral,
            "{name}: ephemeral containers"
        );
        assert_eq!(
            got.init_failed_for_good, r.want_init_failed,
            "{name}: init failed for good"
        );
        assert_eq!(got.phase, r.want_phase, "{name}: phase");
    }
}

#[test]
fn a_deleting_pod_kills_what_runs_and_starts_nothing() {
    let rows = vec![
        row("running and not created containers", "Always")
            .deleting()
            .app(vec![running(), not_created(), exited(1)])
            .wants_app(vec![Kill("deletion"), Keep, Keep]),
        row("a running ephemeral container", "Always")
            .deleting()
            .app(vec![running()])
            .ephemeral(vec![exited(0), running()])
            .wants_app(vec![Kill("deletion")])
            .wants_ephemeral(vec![Keep, Kill("deletion")]),
        row("a running init container", "OnFailure")
            .deleting()
            .init(vec![running(), not_created()])
            .app(vec![not_created()])
            .wants_init(vec![Kill("deletion"), Keep])
            .wants_app(vec![Keep]),
    ];
    for r in rows {
        let got = compute_pod_actions(&PodView {
            restart_policy: r.policy.into(),
            deleting: true,
            init_failed_for_good: false,
            init: r.init,
            app: r.app,
            ephemeral: r.ephemeral,
        });
        let name = r.name;
        assert!(got.terminate, "{name}: terminates");
        assert_eq!(got.init, r.want_init, "{name}: init containers");
        assert_eq!(got.app, r.want_app, "{name}: containers");
        assert_eq!(
            got.ephemeral, r.want_ephemeral,
            "{name}: ephemeral containers"
        );
        let kills: Vec<(Kind, usize)> = (r.want_init.iter().enumerate())
            .map(|(i, a)| ((Kind::Init, i), a))
            .chain(
                r.want_app
                    .iter()
                    .enumerate()
                    .map(|(i, a)| ((Kind::App, i), a)),
            )
            .chain((r.want_ephemeral.iter().enumerate()).map(|(i, a)| ((Kind::Ephemeral, i), a)))
            .filter(|(_, a)| matches!(a, Kill(_)))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got.kills(), kills, "{name}: the containers to kill");
    }
}

#[test]
fn a_pod_whose_init_failed_for_good_starts_nothing_more() {
    let got = compute_pod_actions(&PodView {
        restart_policy: "Never".into(),
        deleting: false,
        init_failed_for_good: true,
        init: vec![exited(1)],
        app: vec![not_created()],
        ephemeral: vec![],
    });
    assert_eq!((got.init, got.app), (vec![Keep], vec![Keep]));
    assert!(got.init_failed_for_good);
    assert_eq!(got.phase, "Failed");
}
