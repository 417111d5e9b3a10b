//! The Job's failure arithmetic as pure functions: how many pods should run, how long
//! to wait before replacing failed pods, when the back-off limit is passed, and what a
//! `podFailurePolicy` says about one failed pod.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// The first delay before a failed pod is replaced; it doubles with every failure
/// since the last success.
pub(super) const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// Upstream caps the doubling at six minutes.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// The delay after `failures` consecutive failures: 10 s, 20 s, 40 s, ... 320 s, then
/// 360 s for good (10 s * 2^5 = 320 s < 360 s < 640 s = 10 s * 2^6).
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// How many pods a NonIndexed Job wants running: parallelism, but no more than the
/// completions still missing. A work-queue Job (no completions) starts no new pods
/// once one has succeeded: the others are finishing the queue.
pub fn wanted_active(
    parallelism: i32,
    completions: Option<i32>,
    succeeded: i32,
    active: i32,
) -> i32 {
    let parallelism = parallelism.max(0);
    match completions {
        Some(c) => (c - succeeded).clamp(0, parallelism),
        None if succeeded > 0 => active.min(parallelism),
        None => parallelism,
    }
}

/// With `restartPolicy: OnFailure` the kubelet restarts failing containers in place;
/// upstream counts those restarts of active pods against the back-off limit.
pub fn restarts_exceed_limit(restart_policy: &str, backoff_limit: i32, active: &[&Pod]) -> bool {
    if restart_policy != "OnFailure" {
        return false;
    }
    let restarts: i32 = active
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= backoff_limit
    }
}

/// What a pod failure policy decided about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    /// Fail the whole Job now; the message says which rule matched.
    FailJob(String),
    /// Neither count the failure nor fail the Job; the pod is simply replaced.
    Ignore,
    /// Count it against the back-off limit (also what happens when no rule matches).
    Count,
}

fn exit_code_matches(req: &PodFailurePolicyOnExitCodesRequirement, code: i32) -> bool {
    match req.operator.as_str() {
        "In" => req.values.contains(&code),
        "NotIn" => !req.values.contains(&code),
        _ => false,
    }
}

/// The first terminated container whose non-zero exit code satisfies `req` (exit code 0
/// never matches, whatever the operator).
fn matching_container<'a>(
    pod: &'a Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    init.chain(status.container_statuses.iter().flatten())
        .filter(|c| req.container_name.as_ref().is_none_or(|n| *n == c.name))
        .find(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0 && exit_code_matches(req, t.exit_code))
        })
}

/// Evaluates the rules in order for a pod in phase Failed; the first match decides.
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> PolicyAction {
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    for (i, rule) in policy.rules.iter().enumerate() {
        let mut matched = None;
        if let Some(req) = &rule.on_exit_codes {
            if let Some(c) = matching_container(pod, req) {
                let code = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map_or(0, |t| t.exit_code);
                matched = Some(format!(
                    "Container {} for pod {key} failed with exit code {code} matching {} rule at index {i}",
                    c.name, rule.action
                ));
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let want = if pattern.status.is_empty() {
                "True"
            } else {
                pattern.status.as_str()
            };
            let has = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == pattern.type_ && c.status == want);
            if has && matched.is_none() {
                matched = Some(format!(
                    "Pod {key} has condition {} matching {} rule at index {i}",
                    pattern.type_, rule.action
                ));
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => PolicyAction::FailJob(message),
                "Ignore" => PolicyAction::Ignore,
                _ => PolicyAction::Count,
            };
        }
    }
    PolicyAction::Count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let cases = [
            ("no failure", 0, 0),
            ("first", 1, 10),
            ("second", 2, 20),
            ("third", 3, 40),
            ("sixth", 6, 320),
            ("seventh is capped", 7, 360),
            ("many", 60, 360),
        ];
        for (name, failures, secs) in cases {
            assert_eq!(backoff_delay(failures), Duration::from_secs(secs), "{name}");
        }
    }

    #[test]
    fn active_pods_are_parallelism_bounded_by_missing_completions() {
        let cases = [
            ("fresh job", 2, Some(5), 0, 0, 2),
            ("one completion missing", 2, Some(5), 4, 1, 1),
            ("done", 2, Some(5), 5, 0, 0),
            ("more succeeded than asked", 2, Some(5), 7, 0, 0),
            ("work queue before success", 3, None, 0, 1, 3),
            (
                "work queue after a success keeps the rest",
                3,
                None,
                1,
                2,
                2,
            ),
            ("parallelism zero", 0, Some(5), 0, 0, 0),
        ];
        for (name, parallelism, completions, succeeded, active, want) in cases {
            assert_eq!(
                wanted_active(parallelism, completions, succeeded, active),
                want,
                "{name}"
            );
        }
    }

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {
                "phase": "Failed",
                "conditions": conditions.iter().map(|c| json!({"type": c, "status": "True"})).collect::<Vec<_>>(),
                "containerStatuses": exit_codes.iter().map(|(n, code)| json!({
                    "name": n, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": code}},
                })).collect::<Vec<_>>(),
            },
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn failure_policy_rules_match_in_order() {
        let rules = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [7]}},
        ]));
        let cases = [
            (
                "disruption is ignored",
                failed_pod(&[("main", 42)], &["DisruptionTarget"]),
                "Ignore",
            ),
            (
                "exit 42 in main fails the job",
                failed_pod(&[("main", 42)], &[]),
                "FailJob",
            ),
            (
                "exit 42 in another container is counted by NotIn",
                failed_pod(&[("side", 42)], &[]),
                "Count",
            ),
            (
                "exit 1 falls through to the last rule",
                failed_pod(&[("main", 1)], &[]),
                "FailJob",
            ),
            (
                "exit 7 matches no rule",
                failed_pod(&[("main", 7)], &[]),
                "Count",
            ),
            (
                "exit 0 never matches",
                failed_pod(&[("main", 0)], &[]),
                "Count",
            ),
        ];
        for (name, pod, want) in cases {
            let got = match match_failure_policy(&rules, &pod) {
                PolicyAction::FailJob(_) => "FailJob",
                PolicyAction::Ignore => "Ignore",
                PolicyAction::Count => "Count",
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn fail_job_message_names_container_code_and_rule() {
        let rules = policy(
            json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]),
        );
        let got = match_failure_policy(&rules, &failed_pod(&[("c", 3)], &[]));
        assert_eq!(
            got,
            PolicyAction::FailJob(
                "Container c for pod ns/p failed with exit code 3 matching FailJob rule at index 0"
                    .into()
            )
        );
    }

    #[test]
    fn container_restarts_count_only_with_on_failure() {
        let running = |restarts: i32| -> Pod {
            serde_json::from_value(json!({"status": {"containerStatuses": [
                {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": restarts}
            ]}}))
            .unwrap()
        };
        let (one, two) = (running(1), running(2));
        let cases = [
            ("Never ignores restarts", "Never", 1, vec![&two], false),
            (
                "limit zero and one restart",
                "OnFailure",
                0,
                vec![&one],
                true,
            ),
            ("below the limit", "OnFailure", 4, vec![&one, &two], false),
            ("at the limit", "OnFailure", 3, vec![&one, &two], true),
        ];
        for (name, policy, limit, pods, want) in cases {
            assert_eq!(restarts_exceed_limit(policy, limit, &pods), want, "{name}");
        }
    }
}
