//! ControllerRevisions: one per template the DaemonSet has had, named
//! `<ds>-<hash>`, holding a patch that restores the template (what `kubectl rollout
//! history|undo daemonset` read), numbered in order of use, and pruned to
//! revisionHistoryLimit without ever deleting a revision a live pod still runs
//! (upstream constructHistory, snapshot, dedupCurHistories, cleanupHistory).

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use tracing::info;

use super::nodes::REVISION_HASH_LABEL;
use super::{Error, Result};
use crate::deployment::util::compute_hash;
use crate::podcontrol::controller_ref;

/// The patch a revision stores: `spec.template` replaced wholesale, byte for byte as
/// upstream's getPatch writes it (the template as Go marshals it, every object's keys
/// sorted, `"$patch":"replace"` first), since upstream's tooling and e2e tests compare
/// a revision's raw data with the patch they compute from the DaemonSet.
pub fn revision_data(ds: &DaemonSet) -> Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    as_go_marshals(&mut template);
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    sorted(json!({ "spec": { "template": template } }))
}

/// Adds the empty values Go's encoder writes for fields without `omitempty` that a
/// Rust client leaves out: the template's `creationTimestamp: null` and every
/// container's `resources: {}`.
fn as_go_marshals(template: &mut Value) {
    let Some(t) = template.as_object_mut() else {
        return;
    };
    let meta = t.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(c) = c.as_object_mut() {
                c.entry("resources").or_insert_with(|| json!({}));
            }
        }
    }
}

/// The value with every object's keys in byte order, as Go writes a map.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Whether `cr` records the DaemonSet's current template. Revisions written before
/// the data had Go's empty values still match theirs.
pub fn matches(ds: &DaemonSet, cr: &ControllerRevision) -> bool {
    cr.data.as_ref().is_some_and(|d| {
        let mut stored = d.0.clone();
        if let Some(t) = stored.pointer_mut("/spec/template") {
            as_go_marshals(t);
        }
        stored == revision_data(ds)
    })
}

/// The hash of the current template (with the collision count, as upstream).
pub fn current_hash(ds: &DaemonSet) -> String {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    compute_hash(
        &template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    )
}

/// The revision for the current template.
pub fn snapshot(ds: &DaemonSet, hash: &str, revision: i64) -> ControllerRevision {
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision,
    }
}

fn hash_of(cr: &ControllerRevision) -> &str {
    cr.labels().get(REVISION_HASH_LABEL).map_or_else(
        || cr.metadata.name.as_deref().unwrap_or_default(),
        String::as_str,
    )
}

/// Old revisions to delete, oldest first, so that at most `limit` remain; revisions a
/// live pod still runs are kept even beyond the limit.
pub fn to_prune<'a>(
    old: &[&'a ControllerRevision],
    pods: &[&Pod],
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let mut excess = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    let live: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).map(String::as_str))
        .collect();
    let mut by_age = old.to_vec();
    by_age.sort_by_key(|cr| cr.revision);
    let mut prune = Vec::new();
    for cr in by_age {
        if excess == 0 {
            break;
        }
        if !live.contains(hash_of(cr)) {
            prune.push(cr);
            excess -= 1;
        }
    }
    prune
}

/// The current revision's hash and the old revisions, creating or renumbering the
/// current one as needed. `owned` are the revisions the DaemonSet controls.
pub async fn construct(
    api: &Api<ControllerRevision>,
    pods_api: &Api<Pod>,
    ds: &DaemonSet,
    owned: &[&ControllerRevision],
    pods: &[&Pod],
) -> Result<(String, Vec<ControllerRevision>)> {
    let (mut current, old): (Vec<&ControllerRevision>, Vec<&ControllerRevision>) =
        owned.iter().partition(|cr| matches(ds, cr));
    let next = old.iter().map(|cr| cr.revision).max().unwrap_or(0) + 1;
    let old: Vec<ControllerRevision> = old.into_iter().cloned().collect();
    current.sort_by_key(|cr| std::cmp::Reverse(cr.revision));
    let Some((keep, duplicates)) = current.split_first() else {
        let hash = create_snapshot(api, ds, next).await?;
        return Ok((hash, old));
    };
    let hash = hash_of(keep).to_string();
    for dup in duplicates {
        // Two revisions of one template (a collision recovered from): move its pods to
        // the kept hash, then drop it.
        for pod in pods.iter().filter(|p| {
            p.labels().get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash_of(dup))
        }) {
            let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: hash}}});
            pods_api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(|source| Error::Revision {
                    name: pod.name_any(),
                    source,
                })?;
        }
        delete_revision(api, dup).await?;
    }
    if keep.revision < next {
        let patch = json!({ "revision": next });
        api.patch(
            &keep.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(|source| Error::Revision {
            name: keep.name_any(),
            source,
        })?;
    }
    Ok((hash, old))
}

/// Creates the current revision. One already there with another template is a hash
/// collision: the collision count goes up (a new hash next sync) and this sync fails.
async fn create_snapshot(
    api: &Api<ControllerRevision>,
    ds: &DaemonSet,
    revision: i64,
) -> Result<String> {
    let hash = current_hash(ds);
    let cr = snapshot(ds, &hash, revision);
    let name = cr.name_any();
    match api.create(&PostParams::default(), &cr).await {
        Ok(_) => {
            info!(revision = %name, number = revision, "recorded a new revision");
            Ok(hash)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api.get(&name).await.map_err(|source| Error::Revision {
                name: name.clone(),
                source,
            })?;
            let ours = crate::podcontrol::controller_of(&existing.metadata)
                .is_some_and(|o| Some(&o.uid) == ds.metadata.uid.as_ref());
            if ours && matches(ds, &existing) {
                return Ok(hash);
            }
            let count = ds
                .status
                .as_ref()
                .and_then(|s| s.collision_count)
                .unwrap_or(0)
                + 1;
            let ds_api: Api<DaemonSet> = Api::namespaced(
                api.clone().into_client(),
                &ds.namespace().unwrap_or_default(),
            );
            let patch = json!({"status": {"collisionCount": count}});
            ds_api
                .patch_status(
                    &ds.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(|source| Error::Status {
                    key: ds.name_any(),
                    source,
                })?;
            Err(Error::HashCollision(name))
        }
        Err(source) => Err(Error::Revision { name, source }),
    }
}

async fn delete_revision(api: &Api<ControllerRevision>, cr: &ControllerRevision) -> Result<()> {
    match api.delete(&cr.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::Revision {
            name: cr.name_any(),
            source,
        }),
    }
}

/// Deletes old revisions beyond revisionHistoryLimit (default 10).
pub async fn cleanup(
    api: &Api<ControllerRevision>,
    ds: &DaemonSet,
    old: &[ControllerRevision],
    pods: &[&Pod],
) -> Result<()> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let old: Vec<&ControllerRevision> = old.iter().collect();
    for cr in to_prune(&old, pods, limit) {
        delete_revision(api, cr).await?;
        info!(revision = %cr.name_any(), "pruned an old revision");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemonset::fixtures::*;

    fn revision(ds: &DaemonSet, hash: &str, number: i64) -> ControllerRevision {
        snapshot(ds, hash, number)
    }

    #[test]
    fn a_revision_restores_the_template_and_matches_only_it() {
        let ds = daemon_set("ds");
        let cr = snapshot(&ds, &current_hash(&ds), 1);
        assert_eq!(
            cr.metadata.name.as_deref(),
            Some(format!("ds-{}", current_hash(&ds)).as_str())
        );
        assert_eq!(
            cr.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(
            cr.labels()["app"],
            "web",
            "template labels, so kubectl finds it by selector"
        );
        assert!(matches(&ds, &cr));
        let changed = daemon_set("ds").node_selector("disk", "ssd");
        assert!(
            !matches(&changed, &cr),
            "another template, another revision"
        );
        assert_ne!(current_hash(&changed), current_hash(&ds));
    }

    #[test]
    fn a_revisions_data_is_byte_for_byte_upstreams_patch_of_the_template() {
        let mut ds = daemon_set("ds");
        let spec = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        spec.termination_grace_period_seconds = Some(30);
        spec.dns_policy = Some("ClusterFirst".into());
        spec.containers = vec![k8s_openapi::api::core::v1::Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }];
        let cr = snapshot(&ds, &current_hash(&ds), 1);
        assert_eq!(
            serde_json::to_string(&cr.data.as_ref().unwrap().0).unwrap(),
            concat!(
                r#"{"spec":{"template":{"$patch":"replace","#,
                r#""metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"#,
                r#""spec":{"containers":[{"image":"busybox","name":"c","resources":{}}],"#,
                r#""dnsPolicy":"ClusterFirst","terminationGracePeriodSeconds":30}}}}"#
            )
        );
        // A revision recorded before, without Go's empty values, is still this template's.
        let mut older = cr.clone();
        let data = &mut older.data.as_mut().unwrap().0;
        data["spec"]["template"]["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("creationTimestamp");
        data["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        assert!(matches(&ds, &older));
    }

    #[test]
    fn pruning_keeps_the_limit_and_revisions_live_pods_run() {
        let ds = daemon_set("ds");
        let crs: Vec<ControllerRevision> = (1..=5)
            .map(|n| revision(&ds, &format!("h{n}"), n))
            .collect();
        let old: Vec<&ControllerRevision> = crs.iter().rev().collect();
        let live = pod("p").revision("h1");
        let names = |v: Vec<&ControllerRevision>| v.iter().map(|c| c.revision).collect::<Vec<_>>();
        let cases = [
            ("under the limit", 10, vec![], vec![]),
            ("oldest first", 3, vec![], vec![1, 2]),
            ("a live pod's revision is kept", 3, vec![&live], vec![2, 3]),
            ("limit zero", 0, vec![&live], vec![2, 3, 4, 5]),
        ];
        for (name, limit, pods, want) in cases {
            assert_eq!(names(to_prune(&old, &pods, limit)), want, "{name}");
        }
    }
}
