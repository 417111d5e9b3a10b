//! Deployment helpers shared by every phase (upstream deployment/util): the pod
//! template hash, revision and replica annotations, maxSurge/maxUnavailable fenceposts,
//! and sums over ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::shared::hash::object_hash;
use crate::shared::scale::scaled_value;

pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Deployment annotations that describe the Deployment itself and are not copied to its
/// ReplicaSets (everything else, e.g. kubernetes.io/change-cause, is).
const NOT_COPIED: [&str; 6] = [
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    ROLLBACK_TO,
];

/// The pod-template-hash of `template` (see [`object_hash`]).
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    object_hash(template, collision_count)
}

/// The template without the pod-template-hash label: what the Deployment's template
/// looked like when this ReplicaSet was made from it.
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH_LABEL);
        if labels.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    t
}

/// Upstream's EqualIgnoreHash: the ReplicaSet runs the Deployment's current template.
pub fn template_matches(rs: &ReplicaSet, d: &Deployment) -> bool {
    let (Some(rs_template), Some(d_spec)) = (
        rs.spec.as_ref().and_then(|s| s.template.as_ref()),
        d.spec.as_ref(),
    ) else {
        return false;
    };
    semantic(&without_hash(rs_template)) == semantic(&without_hash(&d_spec.template))
}

/// The template as upstream's semantic equality sees it: Go's non-pointer fields make
/// `false`, `0`, `""` and empty maps and lists the same as absent. Templates written
/// through protobuf (kubectl create) carry those zero values explicitly; the same
/// template read back as JSON (kubectl rollout undo) does not.
fn semantic(template: &PodTemplateSpec) -> serde_json::Value {
    fn prune(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Null | Value::Bool(false) => None,
            Value::Number(n) if n.as_f64() == Some(0.0) => None,
            Value::String(s) if s.is_empty() => None,
            Value::Array(items) => {
                // Elements stay (positions matter); only empty lists go.
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|i| prune(i).unwrap_or(Value::Null))
                    .collect();
                (!items.is_empty()).then_some(Value::Array(items))
            }
            Value::Object(map) => {
                let map: serde_json::Map<String, Value> = map
                    .into_iter()
                    .filter_map(|(k, v)| prune(v).map(|v| (k, v)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            v => Some(v),
        }
    }
    prune(serde_json::to_value(template).unwrap_or_default()).unwrap_or_default()
}

pub fn annotation<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations?.get(key).map(String::as_str)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs.metadata.annotations.as_ref(), REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn max_revision<'a>(rses: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rses.into_iter().map(revision).max().unwrap_or(0)
}

/// The Deployment's annotations a ReplicaSet should carry.
pub fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    let mut out = d.metadata.annotations.clone().unwrap_or_default();
    out.retain(|k, _| !NOT_COPIED.contains(&k.as_str()));
    out
}

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn deployment_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sum of spec.replicas (what the Deployment asked for).
pub fn sum_spec<'a>(rses: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rses.into_iter().map(spec_replicas).sum()
}

/// Sum of status.replicas (pods that exist).
pub fn sum_actual<'a>(rses: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rses.into_iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum()
}

pub fn sum_available<'a>(rses: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rses.into_iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        })
        .sum()
}

pub fn sum_ready<'a>(rses: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rses.into_iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum()
}

pub fn is_rolling(d: &Deployment) -> bool {
    let strategy = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref());
    strategy != Some("Recreate")
}

/// (maxSurge, maxUnavailable) in pods for `replicas`: surge rounds up, unavailable
/// rounds down, and both zero would deadlock a rollout, so unavailable becomes 1.
/// 10 replicas at 25%/25%: surge ceil(2.5) = 3, unavailable floor(2.5) = 2.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    replicas: i32,
) -> (i32, i32) {
    let surge = scaled_value(max_surge, replicas, true);
    let unavailable = scaled_value(max_unavailable, replicas, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let default = IntOrString::String("25%".into());
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&default);
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    resolve_fenceposts(surge, unavailable, deployment_replicas(d))
}

/// maxSurge in pods, 0 for Recreate.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) {
        fenceposts(d).0
    } else {
        0
    }
}

/// maxUnavailable in pods, never more than replicas; 0 for Recreate or no replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = deployment_replicas(d);
    if !is_rolling(d) || replicas == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas)
}

/// The annotations a ReplicaSet gets each time the Deployment sizes it.
pub fn replica_annotations(d: &Deployment) -> [(&'static str, String); 2] {
    let replicas = deployment_replicas(d);
    [
        (DESIRED_REPLICAS, replicas.to_string()),
        (MAX_REPLICAS, (replicas + max_surge(d)).to_string()),
    ]
}

/// Every pod of the new ReplicaSet is available and nothing else runs.
pub fn is_saturated(d: &Deployment, new_rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = new_rs else { return false };
    let replicas = deployment_replicas(d);
    let desired = annotation(rs.metadata.annotations.as_ref(), DESIRED_REPLICAS)
        .and_then(|v| v.parse::<i32>().ok());
    spec_replicas(rs) == replicas
        && desired == Some(replicas)
        && rs
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
            == replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn templates_match_semantically_ignoring_the_hash_label_and_zero_values() {
        let rs_of = |t: PodTemplateSpec| ReplicaSet {
            spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                template: Some(t),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d_of = |t: PodTemplateSpec| Deployment {
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
                template: t,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut hashed = template("nginx:1");
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_HASH_LABEL.into(), "abc".into());
        // What a protobuf write stores: Go's zero values spelled out.
        let mut zeroes = hashed.clone();
        let spec = zeroes.spec.as_mut().unwrap();
        spec.host_network = Some(false);
        spec.containers[0].stdin = Some(false);
        spec.containers[0].tty = Some(false);
        zeroes.metadata.as_mut().unwrap().generation = Some(0);
        let cases = [
            (
                "identical but for the hash label",
                hashed.clone(),
                template("nginx:1"),
                true,
            ),
            (
                "zero values against absent ones",
                zeroes,
                template("nginx:1"),
                true,
            ),
            ("another image", hashed.clone(), template("nginx:2"), false),
            (
                "a real setting differs",
                hashed.clone(),
                {
                    let mut t = template("nginx:1");
                    t.spec.as_mut().unwrap().host_network = Some(true);
                    t
                },
                false,
            ),
        ];
        for (name, rs, d, want) in cases {
            assert_eq!(template_matches(&rs_of(rs), &d_of(d)), want, "{name}");
        }
    }

    #[test]
    fn template_hash_is_stable_and_changes_with_the_template() {
        let a = compute_hash(&template("nginx:1"), None);
        assert_eq!(
            a,
            compute_hash(&template("nginx:1"), None),
            "same template, same hash"
        );
        assert_ne!(
            a,
            compute_hash(&template("nginx:2"), None),
            "new image, new hash"
        );
        assert_ne!(
            a,
            compute_hash(&template("nginx:1"), Some(1)),
            "a collision count moves the hash"
        );
        // Pinned: a change here renames every ReplicaSet of every existing Deployment.
        assert_eq!(
            compute_hash(&PodTemplateSpec::default(), None),
            compute_hash(&PodTemplateSpec::default(), None)
        );
    }

    #[test]
    fn the_hash_label_is_ignored_when_comparing_templates() {
        let mut labelled = template("nginx:1");
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_HASH_LABEL.into(), "abc".into());
        assert_eq!(without_hash(&labelled), template("nginx:1"));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let cases = [
            (
                "25%/25% of 10: ceil(2.5)=3, floor(2.5)=2",
                pct("25%"),
                pct("25%"),
                10,
                (3, 2),
            ),
            (
                "25%/25% of 1: ceil(0.25)=1, floor(0.25)=0",
                pct("25%"),
                pct("25%"),
                1,
                (1, 0),
            ),
            (
                "ints pass through",
                IntOrString::Int(1),
                IntOrString::Int(0),
                3,
                (1, 0),
            ),
            (
                "both zero: unavailable becomes 1",
                IntOrString::Int(0),
                IntOrString::Int(0),
                3,
                (0, 1),
            ),
            ("0%/0% is both zero too", pct("0%"), pct("0%"), 5, (0, 1)),
            (
                "100% surge of 3 is 3",
                pct("100%"),
                IntOrString::Int(0),
                3,
                (3, 0),
            ),
            (
                "30% of 5: ceil(1.5)=2, floor(1.5)=1",
                pct("30%"),
                pct("30%"),
                5,
                (2, 1),
            ),
        ];
        for (name, surge, unavailable, replicas, want) in cases {
            assert_eq!(
                resolve_fenceposts(&surge, &unavailable, replicas),
                want,
                "{name}"
            );
        }
    }
}
