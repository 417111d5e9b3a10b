//! Upstream's `Priority` admission plugin: a created pod's `priorityClassName` becomes
//! its `spec.priority` and `preemptionPolicy` (the globalDefault class's, or 0, when it
//! names none), an unknown class or a conflicting integer is refused with upstream's
//! 403, and only one PriorityClass may be the global default. The two built-in
//! classes are made at start-up (`api/bootstrap.rs`, [`SYSTEM_CLASSES`]).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AdmissionRequest, MutatingAdmission, Operation, ValidatingAdmission};
use crate::api::Api;
use crate::status::{ApiError, Result, Target};

/// kube-apiserver's built-in classes: name, value, description.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

pub struct Priority;

/// Every stored PriorityClass.
async fn classes(api: &Api) -> Result<Vec<Value>> {
    let snap = api.registry.snapshot();
    let Some(res) = snap.get("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(Vec::new());
    };
    let (list, _) = api.cache(res).await?.list(&res.prefix_in(None));
    Ok(list.iter().map(|c| (**c).clone()).collect())
}

/// The global default class; of several, the one with the lowest value, as upstream.
fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
}

/// Resolves a new pod's priority from its class (upstream's `admitPod` on create).
fn resolve(pod: &mut Value, classes: &[Value]) -> std::result::Result<(), String> {
    let named = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (value, policy) = match &named {
        Some(name) => {
            let Some(class) = classes.iter().find(|c| crate::object::name(c) == name) else {
                return Err(format!("no PriorityClass with name {name} was found"));
            };
            (
                class.get("value").and_then(Value::as_i64).unwrap_or(0),
                class.get("preemptionPolicy").cloned(),
            )
        }
        None => match default_class(classes) {
            Some(class) => {
                pod["spec"]["priorityClassName"] = json!(crate::object::name(class));
                (
                    class.get("value").and_then(Value::as_i64).unwrap_or(0),
                    class.get("preemptionPolicy").cloned(),
                )
            }
            None => (0, None),
        },
    };
    if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        if given != value {
            return Err(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"));
        }
    }
    pod["spec"]["priority"] = json!(value);
    if let Some(policy) = policy.filter(|p| p.is_string()) {
        if let Some(given) = pod
            .pointer("/spec/preemptionPolicy")
            .filter(|p| !p.is_null())
        {
            if *given != policy {
                return Err(format!(
                    "the string value of PreemptionPolicy ({}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                    given.as_str().unwrap_or(""),
                    policy.as_str().unwrap_or("")
                ));
            }
        }
        pod["spec"]["preemptionPolicy"] = policy;
    }
    Ok(())
}

fn is(request: &AdmissionRequest<'_>, group: &str, plural: &str) -> bool {
    request.subresource.is_none()
        && request.resource.group == group
        && request.resource.plural == plural
}

fn forbidden(request: &AdmissionRequest<'_>, message: String) -> ApiError {
    let r = request.resource;
    ApiError::Forbidden(
        Target::new(&r.group, &r.plural, request.name),
        message,
        None,
    )
}

#[async_trait]
impl MutatingAdmission for Priority {
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()> {
        if !is(request, "", "pods") || !obj.get("spec").is_some_and(Value::is_object) {
            return Ok(());
        }
        match request.operation {
            Operation::Create => {
                let classes = classes(api).await?;
                resolve(obj, &classes).map_err(|m| forbidden(request, m))
            }
            Operation::Update => {
                // Keep what was resolved on create; validation refuses other changes.
                for field in ["priority", "preemptionPolicy"] {
                    if obj["spec"].get(field).is_none_or(Value::is_null) {
                        if let Some(v) = old.and_then(|o| o.pointer(&format!("/spec/{field}"))) {
                            obj["spec"][field] = v.clone();
                        }
                    }
                }
                Ok(())
            }
            Operation::Delete => Ok(()),
        }
    }
}

#[async_trait]
impl ValidatingAdmission for Priority {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        if !is(request, "scheduling.k8s.io", "priorityclasses")
            || request.operation == Operation::Delete
            || obj.get("globalDefault").and_then(Value::as_bool) != Some(true)
        {
            return Ok(());
        }
        let classes = classes(api).await?;
        match default_class(&classes) {
            Some(existing)
                if request.operation == Operation::Create
                    || crate::object::name(existing) != request.name =>
            {
                Err(forbidden(
                    request,
                    format!(
                        "PriorityClass {} is already marked as default. Only one default can exist",
                        crate::object::name(existing)
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": default, "preemptionPolicy": "PreemptLowerPriority"})
    }

    #[test]
    fn pods_get_the_priority_of_their_class() {
        let classes = [
            class("high", 1000, false),
            class("low", 10, true),
            class("lower", 5, true),
        ];
        let cases = [
            ("a named class", json!({"priorityClassName": "high"}), Ok((json!("high"), 1000))),
            ("no class takes the lowest global default", json!({}), Ok((json!("lower"), 5))),
            (
                "an unknown class",
                json!({"priorityClassName": "nope"}),
                Err("no PriorityClass with name nope was found".to_string()),
            ),
            (
                "an integer that differs from the class",
                json!({"priorityClassName": "high", "priority": 7}),
                Err("the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name".to_string()),
            ),
            ("the same integer is accepted", json!({"priorityClassName": "high", "priority": 1000}), Ok((json!("high"), 1000))),
        ];
        for (name, spec, want) in cases {
            let mut pod = json!({"spec": spec});
            let got = resolve(&mut pod, &classes).map(|()| {
                (
                    pod["spec"]["priorityClassName"].clone(),
                    pod["spec"]["priority"].as_i64().unwrap(),
                )
            });
            assert_eq!(got, want, "{name}");
        }
        let mut pod = json!({"spec": {}});
        resolve(&mut pod, &[]).unwrap();
        assert_eq!(
            pod["spec"]["priority"], 0,
            "without any default the priority is 0"
        );
        assert!(pod["spec"].get("priorityClassName").is_none());
    }
}
