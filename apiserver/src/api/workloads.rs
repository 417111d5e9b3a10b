//! Validation of the built-in fields users get wrong most, with upstream's messages:
//! containers (names, images, ports), selectors matching template labels, a Job's
//! restart policy, and fields that may not change after creation.

use serde_json::{json, Value};

use crate::selectors::LabelSelector;
use crate::status::Cause;
use crate::validation::is_dns1123_label;

/// Where the pod template and selector of a workload kind live.
fn template_path(group: &str, plural: &str) -> Option<(&'static str, &'static str)> {
    match (group, plural) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some(("/spec/template", "/spec/selector")),
        ("", "replicationcontrollers") => Some(("/spec/template", "/spec/selector")),
        ("batch", "cronjobs") => Some(("/spec/jobTemplate/spec/template", "")),
        ("", "podtemplates") => Some(("/template", "")),
        _ => None,
    }
}

fn field(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// Problems with a new or updated object of a built-in kind.
pub(super) fn validate(group: &str, plural: &str, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    if (group, plural) == ("", "pods") {
        pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec", &mut causes);
    }
    if let Some((template, selector)) = template_path(group, plural) {
        let spec_ptr = format!("{template}/spec");
        if let Some(spec) = obj.pointer(&spec_ptr) {
            pod_spec(spec, &field(&spec_ptr), &mut causes);
        }
        if !selector.is_empty() {
            selector_matches(group, plural, obj, template, selector, &mut causes);
        }
        if group == "batch" {
            let policy = obj
                .pointer(&format!("{spec_ptr}/restartPolicy"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(policy, "Never" | "OnFailure") {
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: format!("{}.restartPolicy", field(&spec_ptr)),
                    message: format!(
                        "Unsupported value: {policy:?}: supported values: \"OnFailure\", \"Never\""
                    ),
                });
            }
        }
    }
    if matches!((group, plural), ("", "secrets" | "configmaps")) {
        config_keys(obj, &mut causes);
    }
    if let Some(old) = old {
        immutable(group, plural, obj, old, &mut causes);
    }
    causes
}

/// Keys of a Secret's or ConfigMap's `data` and `binaryData`: upstream's `IsConfigMapKey`.
fn config_keys(obj: &Value, causes: &mut Vec<Cause>) {
    for map in ["data", "binaryData"] {
        let keys = obj
            .get(map)
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        for (key, _) in keys {
            let at = format!("{map}[{key}]");
            if key.len() > 253 {
                causes.push(Cause::invalid(
                    &at,
                    key,
                    "must be no more than 253 characters",
                ));
            }
            let chars_ok = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !chars_ok {
                causes.push(Cause::invalid(&at, key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
            if key == "." {
                causes.push(Cause::invalid(&at, key, "must not be '.'"));
            } else if key == ".." {
                causes.push(Cause::invalid(&at, key, "must not be '..'"));
            } else if key.starts_with("..") {
                causes.push(Cause::invalid(&at, key, "must not start with '..'"));
            }
        }
    }
}

fn selector_matches(
    group: &str,
    plural: &str,
    obj: &Value,
    template: &str,
    selector: &str,
    causes: &mut Vec<Cause>,
) {
    let sel = obj.pointer(selector);
    let labels = obj
        .pointer(&format!("{template}/metadata/labels"))
        .and_then(Value::as_object);
    // ReplicationControllers keep a plain map as selector (defaulted from the labels).
    let parsed = match sel {
        None | Some(Value::Null) if plural == "replicationcontrollers" => return,
        None | Some(Value::Null) if group == "batch" => return, // generated on create
        None | Some(Value::Null) => {
            causes.push(Cause::required(field(selector), ""));
            return;
        }
        Some(s) if plural == "replicationcontrollers" => {
            LabelSelector::from_label_selector(&json!({"matchLabels": s}))
        }
        Some(s) => LabelSelector::from_label_selector(s),
    };
    match parsed {
        Err(e) => causes.push(Cause::invalid(field(selector), "", &e.to_string())),
        Ok(s) if s.is_empty() && group == "apps" => causes.push(Cause::invalid(
            field(selector),
            "",
            &format!(
                "empty selector is invalid for {}",
                &plural[..plural.len() - 1]
            ),
        )),
        Ok(s) if !s.matches(labels) => causes.push(Cause::invalid(
            format!("{}.metadata.labels", field(template)),
            &serde_json::to_string(&labels).unwrap_or_default(),
            "`selector` does not match template `labels`",
        )),
        Ok(_) => {}
    }
}

fn pod_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut names = std::collections::HashSet::new();
    for key in ["initContainers", "containers"] {
        let list = spec.get(key).and_then(Value::as_array);
        if key == "containers" && list.is_none_or(Vec::is_empty) {
            causes.push(Cause::required(format!("{path}.containers"), ""));
        }
        for (i, c) in list.into_iter().flatten().enumerate() {
            let at = format!("{path}.{key}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::required(format!("{at}.name"), ""));
            } else if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{at}.name"), name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
            } else if !names.insert(name.to_string()) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{at}.name"),
                    message: format!("Duplicate value: {name:?}"),
                });
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                causes.push(Cause::required(format!("{at}.image"), ""));
            }
            for (j, p) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=65535).contains(&port) {
                    causes.push(
                        Cause::invalid(
                            format!("{at}.ports[{j}].containerPort"),
                            &port.to_string(),
                            "must be between 1 and 65535, inclusive",
                        )
                        .numeric(port),
                    );
                }
                if let Some(n) = p.get("name").and_then(Value::as_str) {
                    if n.len() > 15
                        || !n.bytes().any(|b| b.is_ascii_lowercase())
                        || !is_dns1123_label(n)
                        || n.contains("--")
                    {
                        causes.push(Cause::invalid(format!("{at}.ports[{j}].name"), n, "must be no more than 15 characters, contain only lowercase alphanumeric characters or '-', contain at least one letter, and not start, end with or contain consecutive '-'"));
                    }
                }
            }
        }
    }
}

impl Cause {
    /// Shows the invalid value as a number, as upstream does for integer fields.
    fn numeric(mut self, v: i64) -> Cause {
        if let Some(rest) = self.message.split_once(": ").map(|(_, r)| r.to_string()) {
            self.message = format!("Invalid value: {v}: {rest}");
        }
        self
    }
}

fn immutable(group: &str, plural: &str, obj: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let changed = |p: &str| obj.pointer(p) != old.pointer(p);
    let fields: &[&str] = match (group, plural) {
        ("apps", "deployments" | "replicasets" | "daemonsets") => &["/spec/selector"],
        ("batch", "jobs") => &["/spec/selector", "/spec/template", "/spec/completionMode"],
        _ => &[],
    };
    for p in fields {
        if changed(p) {
            causes.push(Cause::invalid(
                field(p),
                &obj.pointer(p).map(Value::to_string).unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
    if (group, plural) == ("scheduling.k8s.io", "priorityclasses") {
        if changed("/value") {
            causes.push(Cause::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if changed("/preemptionPolicy") {
            causes.push(Cause::invalid(
                "preemptionPolicy",
                obj.pointer("/preemptionPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                "field is immutable",
            ));
        }
    }
    if (group, plural) == ("apps", "statefulsets") {
        let allowed = [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ];
        let strip = |v: &Value| {
            let mut m = v
                .get("spec")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            m.retain(|k, _| !allowed.contains(&k.as_str()));
            m
        };
        if strip(obj) != strip(old) {
            causes.push(Cause::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    #[test]
    fn selector_must_match_template_labels() {
        let ok = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "x": "y"}),
        );
        assert!(validate("apps", "deployments", &ok, None).is_empty());
        let bad = deployment(json!({"matchLabels": {"app": "db"}}), json!({"app": "web"}));
        let causes = validate("apps", "deployments", &bad, None);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert!(
            causes[0]
                .message
                .ends_with("`selector` does not match template `labels`"),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn container_mistakes_are_reported() {
        let pod = json!({"spec": {"containers": [{"name": "Web"}, {"name": "db", "image": "x", "ports": [{"containerPort": 70000}]}]}});
        let fields: Vec<String> = validate("", "pods", &pod, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.containers[0].name",
                "spec.containers[0].image",
                "spec.containers[1].ports[0].containerPort"
            ]
        );
    }

    #[test]
    fn job_selector_is_immutable_and_restart_policy_checked() {
        let old = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"metadata": {"labels": {"a": "1"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}});
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["a"] = json!("2");
        new["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let fields: Vec<String> = validate("batch", "jobs", &new, Some(&old))
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert!(
            fields.contains(&"spec.template.spec.restartPolicy".to_string()),
            "{fields:?}"
        );
        assert!(fields.contains(&"spec.selector".to_string()), "{fields:?}");
    }
}
