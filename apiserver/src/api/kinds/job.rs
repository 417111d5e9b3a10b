//! Jobs: unless the user manages the selector, a Job selects its pods by its own uid.

use serde_json::{json, Value};

use super::KindHooks;
use crate::object;

pub(super) struct Jobs;

impl KindHooks for Jobs {
    fn prepare_create(&self, obj: &mut Value, uid: &str) {
        job_selector(obj, uid);
    }
}

/// Unless the user manages the selector, a Job selects its pods by its own uid, and
/// its template carries the labels upstream adds.
fn job_selector(job: &mut Value, uid: &str) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = object::name(job).to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.is_object() {
        return;
    }
    let labels = template
        .as_object_mut()
        .expect("checked")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if let Some(meta) = labels.as_object_mut() {
        let l = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = l.as_object_mut() {
            for (k, v) in [
                ("batch.kubernetes.io/controller-uid", uid),
                ("batch.kubernetes.io/job-name", &name),
                ("controller-uid", uid),
                ("job-name", &name),
            ] {
                l.insert(k.into(), json!(v));
            }
        }
    }
}
