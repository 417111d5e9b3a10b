//! The namespace side of PodSecurity: labels to policy (with upstream's defaulting and
//! errors), the warnings about existing pods, and which pod updates are evaluated.

use serde_json::json;

use super::policy::Version;
use super::*;

fn policy_of(labels: &[(&str, &str)]) -> (String, Vec<String>) {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (p, errors) = Policy::from_labels(&labels);
    (
        format!("enforce={} audit={} warn={}", p.enforce, p.audit, p.warn),
        errors
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect(),
    )
}

type Labels = &'static [(&'static str, &'static str)];

#[test]
fn namespace_labels_give_upstreams_policy() {
    let rows: [(&str, Labels, &str, &[&str]); 8] = [
        (
            "no labels: privileged everywhere",
            &[],
            "enforce=privileged:latest audit=privileged:latest warn=privileged:latest",
            &[],
        ),
        (
            "warn follows a stricter enforce level",
            &[("pod-security.kubernetes.io/enforce", "restricted")],
            "enforce=restricted:latest audit=privileged:latest warn=restricted:latest",
            &[],
        ),
        (
            "warn follows the enforce version too",
            &[
                ("pod-security.kubernetes.io/enforce", "baseline"),
                ("pod-security.kubernetes.io/enforce-version", "v1.25"),
            ],
            "enforce=baseline:v1.25 audit=privileged:latest warn=baseline:v1.25",
            &[],
        ),
        (
            "an explicit warn level is kept",
            &[
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/warn", "privileged"),
            ],
            "enforce=restricted:latest audit=privileged:latest warn=privileged:latest",
            &[],
        ),
        (
            "audit and warn alone",
            &[
                ("pod-security.kubernetes.io/audit", "baseline"),
                ("pod-security.kubernetes.io/warn", "restricted"),
                ("pod-security.kubernetes.io/warn-version", "v1.0"),
            ],
            "enforce=privileged:latest audit=baseline:latest warn=restricted:v1.0",
            &[],
        ),
        (
            "an unknown enforce level enforces restricted",
            &[("pod-security.kubernetes.io/enforce", "strict")],
            "enforce=restricted:latest audit=privileged:latest warn=privileged:latest",
            &[
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            ],
        ),
        (
            "unknown audit and warn levels fail open",
            &[
                ("pod-security.kubernetes.io/audit", "x"),
                ("pod-security.kubernetes.io/warn", "y"),
            ],
            "enforce=privileged:latest audit=privileged:latest warn=privileged:latest",
            &[
                r#"metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "x": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: "y": must be one of privileged, baseline, restricted"#,
            ],
        ),
        (
            "versions are latest or v1.x without leading zeros",
            &[
                ("pod-security.kubernetes.io/enforce", "baseline"),
                ("pod-security.kubernetes.io/enforce-version", "v1.025"),
                ("pod-security.kubernetes.io/audit-version", "1.25"),
            ],
            "enforce=baseline:latest audit=privileged:latest warn=baseline:latest",
            &[
                r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: "v1.025": must be "latest" or "v1.x""#,
                r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.25": must be "latest" or "v1.x""#,
            ],
        ),
    ];
    for (name, labels, want, want_errors) in rows {
        let (got, errors) = policy_of(labels);
        assert_eq!(got, want, "{name}");
        assert_eq!(errors, want_errors, "{name}");
    }
}

fn pod(name: &str, privileged: bool, controller: Option<&str>) -> Value {
    let mut p = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "securityContext": {"privileged": privileged}}]},
    });
    if let Some(uid) = controller {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]);
    }
    p
}

fn host_network_pod(name: &str) -> Value {
    let mut p = pod(name, true, None);
    p["spec"]["hostNetwork"] = json!(true);
    p
}

#[test]
fn a_stricter_enforce_level_names_the_pods_that_violate_it() {
    let pods = [
        pod("web-b", true, Some("u1")),
        pod("web-a", true, Some("u1")),
        pod("web-c", true, Some("u1")),
        pod("ok", false, None),
        host_network_pod("host"),
    ];
    let enforce = LevelVersion {
        level: Level::Baseline,
        version: Version::Latest,
    };
    assert_eq!(
        existing_pod_warnings("team", enforce, &pods),
        [
            r#"existing pods in namespace "team" violate the new PodSecurity enforce level "baseline:latest""#,
            "host: host namespaces, privileged",
            "web-a (and 2 other pods): privileged",
        ]
    );
}

#[test]
fn pods_of_one_controller_are_checked_after_every_other_pod() {
    let pods = [
        pod("a", false, Some("u1")),
        pod("b", false, Some("u1")),
        pod("c", false, None),
        pod("d", false, Some("u2")),
    ];
    let names: Vec<&str> = prioritize(&pods).into_iter().map(object::name).collect();
    assert_eq!(names, ["a", "c", "d", "b"]);
}

trait WithField {
    fn with_field(self, pointer: &str, value: Value) -> Self;
}

impl WithField for Value {
    fn with_field(mut self, pointer: &str, value: Value) -> Self {
        *self
            .pointer_mut(pointer)
            .expect("the field's parent exists") = value;
        self
    }
}

#[test]
fn only_pod_updates_that_change_images_or_ephemeral_containers_are_evaluated() {
    let base = json!({"spec": {
        "containers": [{"name": "c", "image": "a"}],
        "initContainers": [{"name": "i", "image": "a"}],
        "ephemeralContainers": [{"name": "e", "image": "a"}],
    }});
    let rows = [
        ("nothing changed", base.clone(), false),
        (
            "a label changed",
            json!({"metadata": {"labels": {"a": "b"}}, "spec": base["spec"]}),
            false,
        ),
        (
            "a container image changed",
            base.clone()
                .with_field("/spec/containers/0/image", json!("b")),
            true,
        ),
        (
            "an init container image changed",
            base.clone()
                .with_field("/spec/initContainers/0/image", json!("b")),
            true,
        ),
        (
            "an ephemeral container was added",
            base.clone().with_field(
                "/spec/ephemeralContainers",
                json!([{"name": "e", "image": "a"}, {"name": "f", "image": "a"}]),
            ),
            true,
        ),
    ];
    for (name, new, want) in rows {
        assert_eq!(significant_pod_update(&new, &base), want, "{name}");
    }
}
