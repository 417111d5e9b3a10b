//! The StatefulSet's template history as ControllerRevisions (apps/v1), upstream's
//! controller history: each revision holds `{"spec":{"template":{..., "$patch":
//! "replace"}}}`, is named `<set>-<hash>` and numbered; the pods carry the revision's
//! name in `controller-revision-hash`. Pure parts only: building, comparing, ordering,
//! choosing the update revision, and which old revisions to delete.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::identity::REVISION_LABEL;
use crate::podcontrol::controller_ref;
use crate::shared::hash::object_hash;

/// Hash of the revision data plus the collision count (as upstream, the count is always
/// mixed in, so a raised count gives a new name), each decimal digit of the 32-bit hash
/// mapped through the safe alphabet.
pub fn hash(data: &Value, collision_count: i32) -> String {
    object_hash(data, Some(collision_count))
}

/// The revision data for the set's current template: a strategic merge patch that
/// replaces the template.
pub fn data_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = t.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds (upstream's ApplyRevision, for the template only).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The revision a set's current template would be stored as: number `number`, named
/// with `collision_count`, labelled like the template plus the hash.
pub fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> ControllerRevision {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let data = data_of(&template);
    let hash = hash(&data, collision_count);
    let mut labels: BTreeMap<String, String> =
        template.metadata.and_then(|m| m.labels).unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", set.name_any())),
            namespace: set.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

/// Whether two revisions hold the same template (compared as templates, so a store
/// round trip that reorders keys does not make them differ).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    match (template_of(a), template_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Upstream's history order: by revision number, then creation time, then name.
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// What to do to have an update revision for the set's template, given the sorted
/// history and a candidate from [`new_revision`].
#[derive(Debug, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds the template.
    Latest(String),
    /// An older revision holds it (a rollback): renumber it to become the newest.
    Renumber { name: String, number: i64 },
    /// No revision holds it: create the candidate.
    Create,
}

pub fn choose_update(
    sorted: &[ControllerRevision],
    candidate: &ControllerRevision,
) -> UpdateRevision {
    let Some(equal_rev) = sorted.iter().rev().find(|r| equal(r, candidate)) else {
        return UpdateRevision::Create;
    };
    let latest = sorted
        .last()
        .expect("an equal revision exists, so the history is not empty");
    if latest.name_any() == equal_rev.name_any() {
        UpdateRevision::Latest(equal_rev.name_any())
    } else {
        UpdateRevision::Renumber {
            name: equal_rev.name_any(),
            number: candidate.revision,
        }
    }
}

/// The revisions to delete so at most `limit` revisions that no pod uses (and that are
/// neither current nor update) remain, oldest first.
pub fn history_to_delete(
    sorted: &[ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<String> {
    let old: Vec<String> = sorted
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| !live.contains(n))
        .collect();
    let keep = usize::try_from(limit).unwrap_or(0);
    let excess = old.len().saturating_sub(keep);
    old.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statefulset::fixtures::*;

    fn rev(set: &StatefulSet, number: i64) -> ControllerRevision {
        new_revision(set, number, 0)
    }

    #[test]
    fn revision_names_are_stable_and_change_with_template_and_collisions() {
        let a = stateful_set(1);
        let b = stateful_set(1).image("nginx:2");
        let cases = [
            (
                "same template, same name",
                rev(&a, 1).name_any(),
                rev(&a, 7).name_any(),
                true,
            ),
            (
                "other template, other name",
                rev(&a, 1).name_any(),
                rev(&b, 1).name_any(),
                false,
            ),
            (
                "a collision count makes another name",
                new_revision(&a, 1, 0).name_any(),
                new_revision(&a, 1, 1).name_any(),
                false,
            ),
        ];
        for (name, x, y, same) in cases {
            assert_eq!(x == y, same, "{name}: {x} vs {y}");
            assert!(x.starts_with("web-"), "{name}: {x}");
        }
    }

    #[test]
    fn a_revision_gives_back_its_template() {
        let set = stateful_set(1).image("nginx:3");
        let r = rev(&set, 1);
        assert_eq!(template_of(&r), Some(set.spec.unwrap().template));
        assert_eq!(
            r.metadata.labels.unwrap()[REVISION_LABEL],
            r.metadata.name.unwrap().trim_start_matches("web-")
        );
    }

    #[test]
    fn the_update_revision_is_reused_renumbered_or_created() {
        let v1 = stateful_set(1);
        let v2 = stateful_set(1).image("nginx:2");
        let v3 = stateful_set(1).image("nginx:3");
        let history = vec![rev(&v1, 1), rev(&v2, 2)];
        let cases = [
            (
                "unchanged template",
                &v2,
                UpdateRevision::Latest(rev(&v2, 2).name_any()),
            ),
            (
                "rolled back to an older template",
                &v1,
                UpdateRevision::Renumber {
                    name: rev(&v1, 1).name_any(),
                    number: 3,
                },
            ),
            ("a new template", &v3, UpdateRevision::Create),
        ];
        for (name, set, want) in cases {
            let candidate = new_revision(set, next_number(&history), 0);
            assert_eq!(choose_update(&history, &candidate), want, "{name}");
        }
        assert_eq!(
            choose_update(&[], &rev(&v1, 1)),
            UpdateRevision::Create,
            "empty history"
        );
    }

    #[test]
    fn history_sorts_by_number_and_keeps_live_and_recent_revisions() {
        let sets: Vec<StatefulSet> = (1..=5)
            .map(|i| stateful_set(1).image(&format!("nginx:{i}")))
            .collect();
        let mut history: Vec<ControllerRevision> = sets
            .iter()
            .enumerate()
            .rev()
            .map(|(i, s)| rev(s, i as i64 + 1))
            .collect();
        sort(&mut history);
        let numbers: Vec<i64> = history.iter().map(|r| r.revision).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
        let name = |i: usize| history[i].name_any();
        // Live: 2 (a pod still runs it) and 5 (update). Old: 1, 3, 4.
        let live: HashSet<String> = [name(1), name(4)].into();
        let cases = [
            (
                "limit 0 deletes every old one",
                0,
                vec![name(0), name(2), name(3)],
            ),
            ("limit 2 deletes the oldest", 2, vec![name(0)]),
            ("limit 10 deletes nothing", 10, vec![]),
        ];
        for (label, limit, want) in cases {
            assert_eq!(history_to_delete(&history, &live, limit), want, "{label}");
        }
    }
}
