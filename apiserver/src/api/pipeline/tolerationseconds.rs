//! Upstream's `DefaultTolerationSeconds` admission plugin: a pod written without a
//! toleration of the `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable`
//! NoExecute taints gets one for 300 s (upstream's flag defaults), so the node lifecycle
//! loop evicts it five minutes after its node fails. It runs where upstream runs it, after
//! `Priority` and before the webhooks, which therefore see the tolerations.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AdmissionRequest, MutatingAdmission};
use crate::api::Api;
use crate::status::Result;

/// Upstream's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

const TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

pub struct DefaultTolerationSeconds;

#[async_trait]
impl MutatingAdmission for DefaultTolerationSeconds {
    async fn admit(
        &self,
        _api: &Api,
        request: &AdmissionRequest<'_>,
        pod: &mut Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        let r = request.resource;
        let is_pod = r.group.is_empty() && r.plural == "pods" && request.subresource.is_none();
        if is_pod {
            add_tolerations(pod);
        }
        Ok(())
    }
}

/// Adds the missing tolerations. A toleration covers a taint when its key is the taint's
/// or empty (every key) and its effect NoExecute or empty (every effect), as upstream.
pub fn add_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for taint in TAINTS {
        let covered = list.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !covered {
            list.push(
                json!({"key": taint, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or_default().to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn pods_get_five_minute_tolerations_of_the_taints_they_do_not_tolerate() {
        let cases = [
            (
                "no tolerations",
                json!([]),
                vec![
                    ("node.kubernetes.io/not-ready", Some(300)),
                    ("node.kubernetes.io/unreachable", Some(300)),
                ],
            ),
            (
                "its own not-ready toleration",
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]),
                vec![
                    ("node.kubernetes.io/not-ready", Some(10)),
                    ("node.kubernetes.io/unreachable", Some(300)),
                ],
            ),
            (
                "a toleration of everything",
                json!([{"operator": "Exists"}]),
                vec![("", None)],
            ),
            (
                "a NoSchedule toleration of not-ready",
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]),
                vec![
                    ("node.kubernetes.io/not-ready", None),
                    ("node.kubernetes.io/not-ready", Some(300)),
                    ("node.kubernetes.io/unreachable", Some(300)),
                ],
            ),
        ];
        for (name, tolerations, want) in cases {
            let mut pod = json!({"spec": {"containers": [], "tolerations": tolerations}});
            add_tolerations(&mut pod);
            let want: Vec<(String, Option<i64>)> =
                want.into_iter().map(|(k, s)| (k.to_string(), s)).collect();
            assert_eq!(keys(&pod), want, "{name}");
        }
    }
}
