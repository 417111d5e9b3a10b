//! What the agent knows about a pod's containers, and the pod status it reports from that,
//! computed as the kubelet does (`getPhase`, the Initialized / ContainersReady / Ready /
//! PodReadyToStartContainers conditions, container states with upstream's reasons).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How a run of a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    /// Completed, Error, OOMKilled, StartError, ContainerCannotRun...
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Option<Time>,
    pub container_id: Option<String>,
}

/// The state of a container as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Terminated),
}

impl State {
    pub fn waiting(reason: &str, message: Option<String>) -> State {
        State::Waiting {
            reason: reason.into(),
            message,
        }
    }
}

/// One container of the pod, as the agent tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub state: State,
    /// The previous run's end (the status's lastState).
    pub last: Option<Terminated>,
    pub restart_count: i32,
    /// `containerd://<id>` of the current (or last) run.
    pub container_id: Option<String>,
    pub image: String,
    /// `<repository>@sha256:...` of the image it runs.
    pub image_id: String,
    /// Readiness: running, started, and its readiness probe (if any) succeeds.
    pub ready: bool,
    /// Startup: running and its startup probe (if any) has succeeded.
    pub started: bool,
}

impl Record {
    pub fn new(name: &str, image: &str, reason: &str) -> Record {
        Record {
            name: name.into(),
            state: State::waiting(reason, None),
            last: None,
            restart_count: 0,
            container_id: None,
            image: image.into(),
            image_id: String::new(),
            ready: false,
            started: false,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// How its last run ended: the terminated state, or the run a waiting state
    /// (CrashLoopBackOff, a config error) follows.
    pub fn ended(&self) -> Option<&Terminated> {
        match &self.state {
            State::Terminated(t) => Some(t),
            State::Waiting { .. } => self.last.as_ref(),
            State::Running { .. } => None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    pub fn to_status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.clone(),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            state: Some(api_state(&self.state)),
            last_state: Some(match &self.last {
                Some(t) => api_state(&State::Terminated(t.clone())),
                None => ContainerState::default(),
            }),
            ..Default::default()
        }
    }

    /// An ephemeral container's status, as the kubelet reports it: never ready, and no
    /// `started` (the prober manager sets that for init and app containers only).
    pub fn to_ephemeral_status(&self) -> ContainerStatus {
        ContainerStatus {
            ready: false,
            started: None,
            ..self.to_status()
        }
    }

    /// An init container's status: as the kubelet's prober manager decides it, one
    /// that exited 0 is ready (its work is done), whatever its probes said while it ran.
    pub fn to_init_status(&self) -> ContainerStatus {
        ContainerStatus {
            ready: self.ready || self.succeeded(),
            ..self.to_status()
        }
    }
}

fn api_state(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..Default::default()
        },
        State::Terminated(t) => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                reason: Some(t.reason.clone()),
                message: t.message.clone(),
                started_at: t.started_at.clone(),
                finished_at: t.finished_at.clone(),
                container_id: t.container_id.clone(),
                signal: None,
            }),
            ..Default::default()
        },
    }
}

/// The pod's phase from its containers, as the kubelet's getPhase decides it.
pub fn phase(
    restart_policy: &str,
    init: &[Record],
    app: &[Record],
    init_failed_for_good: bool,
) -> &'static str {
    if init_failed_for_good {
        return "Failed";
    }
    if !init.iter().all(Record::succeeded) {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in app {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => {
                if c.last.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// Our conditions: PodReadyToStartContainers, Initialized, ContainersReady, Ready, in
/// upstream's words. `sandbox_ready` says whether the pod's sandbox exists.
pub fn conditions(
    pod: &Pod,
    sandbox_ready: bool,
    init: &[Record],
    app: &[Record],
    phase: &str,
) -> Vec<(String, bool, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    out.push((
        "PodReadyToStartContainers".to_string(),
        sandbox_ready,
        None,
        None,
    ));
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|c| !c.succeeded())
        .map(|c| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        out.push(("Initialized".into(), true, None, None));
    } else {
        out.push((
            "Initialized".into(),
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        ));
    }
    // A pod that finished is not ready; its containers all are, by definition, not running.
    let unready: Vec<&str> = app
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let (ready, reason, message) = if phase == "Succeeded" {
        (false, Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    out.push((
        "ContainersReady".into(),
        ready,
        reason.clone(),
        message.clone(),
    ));
    // Readiness gates: Ready also needs every gate's condition True.
    let status_conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let gates: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .map(|g| g.iter().map(|g| g.condition_type.clone()).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = gates
        .iter()
        .filter(|g| {
            !status_conditions
                .is_some_and(|cs| cs.iter().any(|c| &c.type_ == *g && c.status == "True"))
        })
        .map(String::as_str)
        .collect();
    if ready && !missing.is_empty() {
        out.push((
            "Ready".into(),
            false,
            Some("ReadinessGatesNotReady".into()),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                missing[0]
            )),
        ));
    } else {
        out.push(("Ready".into(), ready, reason, message));
    }
    out
}

/// The full status to report: ours merged into what others own (PodScheduled, readiness
/// gate conditions, DisruptionTarget...), keeping transition times of unchanged conditions.
#[allow(clippy::too_many_arguments)]
pub fn pod_status(
    pod: &Pod,
    sandbox_ready: bool,
    init: &[Record],
    app: &[Record],
    init_failed_for_good: bool,
    host_ip: &str,
    pod_ip: Option<&str>,
    start_time: &Time,
    now: &Time,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = phase(restart_policy, init, app, init_failed_for_good);
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let mine = conditions(pod, sandbox_ready, init, app, phase);
    let mut conditions: Vec<PodCondition> = old_conditions
        .iter()
        .filter(|c| !mine.iter().any(|m| m.0 == c.type_))
        .cloned()
        .collect();
    for (type_, ok, reason, message) in mine {
        let status = if ok { "True" } else { "False" }.to_string();
        let transition = old_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        conditions.push(PodCondition {
            type_,
            status,
            reason,
            message,
            last_transition_time: Some(transition),
            last_probe_time: None,
            ..Default::default()
        });
    }
    let order = |t: &str| {
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        .iter()
        .position(|x| *x == t)
        .unwrap_or(5)
    };
    conditions.sort_by_key(|c| order(&c.type_));
    let ips = |ip: &str| (!ip.is_empty()).then(|| ip.to_string());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: ips(host_ip),
        host_ips: ips(host_ip).map(|ip| vec![HostIP { ip }]),
        pod_ip: pod_ip.map(str::to_string),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip: ip.into() }]),
        start_time: Some(start_time.clone()),
        qos_class: old.qos_class.clone(),
        init_container_statuses: (!init.is_empty())
            .then(|| init.iter().map(Record::to_init_status).collect()),
        container_statuses: Some(app.iter().map(Record::to_status).collect()),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

/// `status.ephemeralContainerStatuses`: absent while the pod has none.
pub fn ephemeral_statuses(ephemeral: &[Record]) -> Option<Vec<ContainerStatus>> {
    (!ephemeral.is_empty()).then(|| ephemeral.iter().map(Record::to_ephemeral_status).collect())
}

/// The status of a pod the node refused at admission, as the kubelet's `rejectPod` sets
/// it: Failed with the reason and message, its QoS class, and only the conditions others own
/// (PodScheduled); no container ever ran, so there are no container statuses.
pub fn refused_status(pod: &Pod, reason: &str, message: &str) -> PodStatus {
    const OURS: [&str; 4] = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    let old = pod.status.clone().unwrap_or_default();
    let conditions: Vec<PodCondition> = old
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !OURS.contains(&c.type_.as_str()))
        .collect();
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        qos_class: old.qos_class,
        conditions: (!conditions.is_empty()).then_some(conditions),
        nominated_node_name: old.nominated_node_name,
        ..Default::default()
    }
}

/// Whether two statuses differ in more than condition timestamps (which only change when
/// a status does).
pub fn differs(old: Option<&PodStatus>, new: &PodStatus) -> bool {
    old != Some(new)
}

/// The OOM-kill reason and the exit reason upstream gives for an exit code.
pub fn exit_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// A map from container name to its spec position, for ordering.
pub fn positions(names: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    names.enumerate().map(|(i, n)| (n, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, state: State, last: bool) -> Record {
        Record {
            last: last.then(|| Terminated {
                exit_code: 1,
                reason: "Error".into(),
                message: None,
                started_at: None,
                finished_at: None,
                container_id: None,
            }),
            state,
            ..Record::new(name, "img", "ContainerCreating")
        }
    }

    fn running() -> State {
        State::Running {
            started_at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn exited(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            reason: exit_reason(code, false).into(),
            message: None,
            started_at: None,
            finished_at: None,
            container_id: None,
        })
    }

    #[test]
    fn phase_follows_the_kubelet() {
        let waiting = State::waiting("ContainerCreating", None);
        let crash = State::waiting("CrashLoopBackOff", None);
        // (name, restart policy, init containers, containers, init failed for good, phase)
        type Case = (
            &'static str,
            &'static str,
            Vec<Record>,
            Vec<Record>,
            bool,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing started",
                "Always",
                vec![],
                vec![rec("a", waiting.clone(), false)],
                false,
                "Pending",
            ),
            (
                "running",
                "Always",
                vec![],
                vec![rec("a", running(), false)],
                false,
                "Running",
            ),
            (
                "init pending",
                "Always",
                vec![rec("i", running(), false)],
                vec![rec("a", waiting.clone(), false)],
                false,
                "Pending",
            ),
            (
                "init failed for good",
                "Never",
                vec![rec("i", exited(1), false)],
                vec![rec("a", waiting.clone(), false)],
                true,
                "Failed",
            ),
            (
                "crash looping is running",
                "Always",
                vec![],
                vec![rec("a", crash.clone(), true)],
                false,
                "Running",
            ),
            (
                "all succeeded, Never",
                "Never",
                vec![],
                vec![rec("a", exited(0), false), rec("b", exited(0), false)],
                false,
                "Succeeded",
            ),
            (
                "all succeeded, OnFailure",
                "OnFailure",
                vec![],
                vec![rec("a", exited(0), false)],
                false,
                "Succeeded",
            ),
            (
                "one failed, Never",
                "Never",
                vec![],
                vec![rec("a", exited(0), false), rec("b", exited(2), false)],
                false,
                "Failed",
            ),
            (
                "failed, OnFailure restarts",
                "OnFailure",
                vec![],
                vec![rec("a", exited(2), false)],
                false,
                "Running",
            ),
            (
                "exited, Always restarts",
                "Always",
                vec![],
                vec![rec("a", exited(0), false)],
                false,
                "Running",
            ),
            (
                "one running one done",
                "Never",
                vec![],
                vec![rec("a", exited(0), false), rec("b", running(), false)],
                false,
                "Running",
            ),
        ];
        for (name, policy, init, app, failed, want) in cases {
            assert_eq!(phase(policy, &init, &app, failed), want, "{name}");
        }
    }

    #[test]
    fn conditions_name_the_containers_holding_them_back() {
        let pod = Pod::default();
        let init = vec![rec("setup", running(), false)];
        let mut a = rec("a", running(), false);
        a.ready = true;
        let b = rec("b", running(), false);
        let c = conditions(&pod, true, &init, &[a.clone(), b], "Pending");
        let get = |t: &str| c.iter().find(|x| x.0 == t).unwrap().clone();
        assert_eq!(
            get("Initialized").3.as_deref(),
            Some("containers with incomplete status: [setup]")
        );
        assert_eq!(
            get("ContainersReady").2.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            get("Ready").3.as_deref(),
            Some("containers with unready status: [b]")
        );
        assert!(get("PodReadyToStartContainers").1);
        let all_ready = conditions(&pod, true, &[], &[a], "Running");
        assert!(all_ready.iter().all(|x| x.1), "{all_ready:?}");
    }

    #[test]
    fn a_completed_pod_is_not_ready_with_reason_pod_completed() {
        let c = conditions(
            &Pod::default(),
            false,
            &[],
            &[rec("a", exited(0), false)],
            "Succeeded",
        );
        let ready = c.iter().find(|x| x.0 == "Ready").unwrap();
        assert_eq!((ready.1, ready.2.as_deref()), (false, Some("PodCompleted")));
    }

    #[test]
    fn an_init_container_that_exited_0_is_ready_and_a_failed_or_running_one_is_not() {
        let pod = Pod::default();
        let init = vec![
            rec("done", exited(0), false),
            rec("failed", exited(1), false),
            rec("running", running(), false),
        ];
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let s = pod_status(&pod, true, &init, &[], false, "", None, &now, &now);
        let ready: Vec<(String, bool)> = s
            .init_container_statuses
            .unwrap()
            .into_iter()
            .map(|c| (c.name, c.ready))
            .collect();
        assert_eq!(
            ready,
            [
                ("done".to_string(), true),
                ("failed".to_string(), false),
                ("running".to_string(), false)
            ]
        );
    }

    #[test]
    fn exit_reasons_are_upstreams() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(3, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }

    #[test]
    fn status_keeps_conditions_others_own_and_transition_times() {
        let then = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let pod = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![
                    PodCondition {
                        type_: "PodScheduled".into(),
                        status: "True".into(),
                        ..Default::default()
                    },
                    PodCondition {
                        type_: "Initialized".into(),
                        status: "True".into(),
                        last_transition_time: Some(then.clone()),
                        ..Default::default()
                    },
                ]),
                qos_class: Some("BestEffort".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = pod_status(
            &pod,
            true,
            &[],
            &[rec("a", running(), false)],
            false,
            "10.0.0.1",
            Some("10.42.0.5"),
            &then,
            &later,
        );
        let conds = s.conditions.unwrap();
        assert!(conds.iter().any(|c| c.type_ == "PodScheduled"));
        let init = conds.iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(
            init.last_transition_time,
            Some(then),
            "unchanged condition keeps its time"
        );
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(later));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.host_ips.unwrap()[0].ip, "10.0.0.1");
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }
}
