//! User CustomResourceDefinitions: validated and given their status on write, served
//! the moment they are stored. A deleted CRD is Terminating: no new objects, its
//! objects are deleted as a client would delete them (their finalizers honoured), and
//! the CRD goes once none is left (the `customresourcecleanup.apiextensions.k8s.io`
//! finalizer).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::guarded::{self, Decision};
use super::{Api, ApiRequest};
use crate::object;
use crate::registry::{resources_from_crd, Resource};
use crate::status::{ApiError, Cause, Result, Target};
use crate::storage::ListOptions;

pub(super) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// Checks a CRD as upstream's validation does for the mistakes users make most.
pub(super) fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let (group, plural) = (s(crd, "/spec/group"), s(crd, "/spec/names/plural"));
    let name = object::name(crd);
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural", ""));
    }
    if s(crd, "/spec/names/kind").is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if !matches!(s(crd, "/spec/scope"), "Namespaced" | "Cluster") {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.scope".into(),
            message: format!(
                "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                s(crd, "/spec/scope")
            ),
        });
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        match v.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => structural(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                true,
                &mut causes,
            ),
        }
    }
    if let Some(old) = old {
        for (field, p) in [
            ("spec.group", "/spec/group"),
            ("spec.names.plural", "/spec/names/plural"),
            ("spec.scope", "/spec/scope"),
        ] {
            if s(old, p) != s(crd, p) {
                causes.push(Cause::invalid(field, s(crd, p), "field is immutable"));
            }
        }
    }
    causes
}

/// Upstream's structural-schema rules in brief: every node has a type (unless it is
/// int-or-string or preserves unknown fields), no `$ref`, the root is an object.
fn structural(schema: &Value, path: &str, root: bool, causes: &mut Vec<Cause>) {
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    if schema.get("$ref").is_some() {
        causes.push(Cause::forbidden(
            format!("{path}.$ref"),
            "$ref is not supported",
        ));
    }
    let ty = schema.get("type").and_then(Value::as_str);
    if root && ty != Some("object") {
        causes.push(Cause::invalid(
            format!("{path}.type"),
            ty.unwrap_or(""),
            "must be object at the root",
        ));
    }
    if ty.is_none()
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        causes.push(Cause::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            if root && k == "metadata" {
                continue;
            }
            structural(v, &format!("{path}.properties[{k}]"), false, causes);
        }
    }
    if let Some(items) = schema.get("items") {
        structural(items, &format!("{path}.items"), false, causes);
    }
    if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        structural(add, &format!("{path}.additionalProperties"), false, causes);
    }
}

/// Sets what upstream's CRD controllers report: accepted names, Established, stored versions.
pub(super) fn set_status(crd: &mut Value, old: Option<&Value>) {
    let mut names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if names.get("singular").is_none() {
        names["singular"] = json!(s(crd, "/spec/names/kind").to_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{}List", s(crd, "/spec/names/kind")));
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .and_then(|v| v.get("name"))
                .cloned()
        })
    {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let now = object::now_rfc3339();
    let since = |t: &str| {
        old.and_then(|o| {
            o.pointer("/status/conditions")
                .and_then(Value::as_array)?
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(t))?
                .get("lastTransitionTime")
                .cloned()
        })
        .unwrap_or_else(|| json!(now))
    };
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")}),
    ];
    // Conditions of other types, as written (through /status) or kept, stay: upstream's
    // controllers own only their own conditions.
    let written = crd.pointer("/status/conditions").and_then(Value::as_array);
    for c in written.into_iter().flatten() {
        let ty = c.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(ty, "NamesAccepted" | "Established") {
            conditions.push(c.clone());
        }
    }
    crd["status"] = json!({
        "acceptedNames": names,
        "conditions": conditions,
        "storedVersions": stored,
    });
    if object::is_deleting(crd) && old.is_some_and(|o| has_condition(o, "Terminating")) {
        mark_terminating(crd, since("Terminating"));
    }
}

/// A custom resource as read from storage, with its version's schema defaults and
/// pruning applied, as upstream applies them when decoding from storage (so a default
/// added to the CRD later shows on objects stored before). `None` when that changes
/// nothing, or for built-in kinds.
pub(super) fn default_on_read(r: &Resource, obj: &Value) -> Option<Value> {
    if !r.defaults_on_read {
        return None;
    }
    let schema = r.schema()?;
    let mut defaulted = obj.clone();
    // What a stored object no longer satisfies is for its next write to report.
    let _ = crate::schema::process(&schema, &mut defaulted);
    (defaulted != *obj).then_some(defaulted)
}

/// After a CRD was written: serve it (a deleted one as terminating: no creates), and
/// when it is being deleted start its clean-up unless one already runs.
pub(super) fn after_write(api: &Arc<Api>, crd: &Value) {
    if let Err(e) = api.registry.register(crd, false) {
        tracing::warn!(error = %e, "cannot serve CustomResourceDefinition");
    }
    if !object::is_deleting(crd) {
        return;
    }
    let name = object::name(crd).to_string();
    if !api
        .crd_cleanups
        .lock()
        .expect("CRD clean-up set lock")
        .insert(name.clone())
    {
        return;
    }
    let api = api.clone();
    tokio::spawn(async move {
        if let Err(e) = cleanup(&api, &name).await {
            tracing::warn!(crd = %name, error = %e, "cleaning up a deleted CustomResourceDefinition failed");
        }
        api.crd_cleanups
            .lock()
            .expect("CRD clean-up set lock")
            .remove(&name);
    });
}

/// Stops serving a deleted CRD.
pub(super) fn after_delete(api: &Api, crd: &Value) {
    api.registry
        .unregister(s(crd, "/spec/group"), s(crd, "/spec/names/plural"));
}

/// What creating an object of a terminating CRD answers (upstream's Forbidden).
pub(super) fn terminating_error(r: &Resource, req: &ApiRequest, obj: &Value) -> ApiError {
    ApiError::Forbidden(
        req.target(r, object::name(obj)),
        "create not allowed while custom resource definition is terminating".into(),
        None,
    )
}

/// The condition a CRD being deleted carries until its objects are gone.
fn terminating_condition(since: Value) -> Value {
    json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
        "message": "CustomResource deletion is in progress", "lastTransitionTime": since})
}

/// How often a clean-up looks again at objects whose finalizers still hold them.
const RECHECK: Duration = Duration::from_secs(1);

/// Deletes every object of a deleted CRD the way a client's delete would (an object
/// with finalizers is only marked, and stays until they are removed), waits until
/// none is left, then drops the clean-up finalizer: upstream's CRD finalizer
/// controller.
async fn cleanup(api: &Arc<Api>, name: &str) -> Result<()> {
    let snap = api.registry.snapshot();
    let crds = snap
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .cloned()
        .expect("CRDs are built in");
    let key = crds.key(None, name);
    let crd_target = Target::new(&crds.group, &crds.plural, name);
    // Terminating=True first, so clients see why their creates are refused.
    let mut crd = Value::Null;
    guarded::update(api, &key, &crd_target, |current| {
        let Some(current) = current.filter(|c| object::is_deleting(c)) else {
            return Ok(Decision::Unchanged);
        };
        crd = current.clone();
        if has_condition(current, "Terminating") {
            return Ok(Decision::Unchanged);
        }
        let mut next = current.clone();
        mark_terminating(&mut next, json!(object::now_rfc3339()));
        Ok(Decision::Write(next))
    })
    .await?;
    if crd.is_null() {
        return Ok(());
    }
    if let Some(r) = resources_from_crd(&crd, false)
        .ok()
        .and_then(|rs| rs.into_iter().next())
    {
        loop {
            let page = api
                .storage
                .list(&r.key_prefix(), ListOptions::default())
                .await?;
            if page.kvs.is_empty() {
                break;
            }
            for kv in page.kvs {
                delete_instance(api, &r, &kv.key).await?;
            }
            tokio::time::sleep(RECHECK).await;
            // Someone removed the clean-up finalizer (or the CRD) meanwhile: nothing to wait for.
            match api.storage.get(&key).await? {
                Some(kv) => {
                    let now: Value = crate::watchcache::decode(&kv.value, kv.mod_revision)?;
                    if !object::finalizers(&now)
                        .iter()
                        .any(|f| f == CLEANUP_FINALIZER)
                    {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
        api.registry.unregister(&r.group, &r.plural);
    }
    // Drop the clean-up finalizer, and the CRD with it when nothing else holds it.
    guarded::update(api, &key, &crd_target, |crd| {
        let Some(crd) = crd else {
            return Ok(Decision::Unchanged);
        };
        let remaining: Vec<String> = object::finalizers(crd)
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect();
        if remaining.is_empty() {
            return Ok(Decision::Delete);
        }
        let mut crd = crd.clone();
        object::metadata_mut(&mut crd).insert("finalizers".into(), json!(remaining));
        Ok(Decision::Write(crd))
    })
    .await?;
    Ok(())
}

/// Deletes one object of a deleted CRD: at once when no finalizer holds it, else it
/// is marked deleted and its finalizers' owners finish it.
async fn delete_instance(api: &Api, r: &Resource, key: &str) -> Result<()> {
    let target = Target::new(&r.group, &r.plural, key.rsplit('/').next().unwrap_or(key));
    guarded::update(api, key, &target, |obj| {
        let Some(obj) = obj else {
            return Ok(Decision::Unchanged);
        };
        if object::finalizers(obj).is_empty() {
            return Ok(Decision::Delete);
        }
        if object::is_deleting(obj) {
            return Ok(Decision::Unchanged);
        }
        let mut marked = obj.clone();
        let meta = object::metadata_mut(&mut marked);
        meta.insert("deletionTimestamp".into(), json!(object::now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        Ok(Decision::Write(marked))
    })
    .await?;
    Ok(())
}

fn has_condition(crd: &Value, t: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
        })
}

/// Adds (or replaces) the Terminating condition.
fn mark_terminating(crd: &mut Value, since: Value) {
    let conditions = &mut crd["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("conditions is an array");
    list.retain(|c| c.get("type").and_then(Value::as_str) != Some("Terminating"));
    list.push(terminating_condition(since));
}

/// Serves every stored CRD (at start-up) and resumes interrupted clean-ups.
pub(super) async fn load_all(api: &Arc<Api>) -> Result<()> {
    let snap = api.registry.snapshot();
    let crds = snap
        .get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .cloned()
        .expect("CRDs are built in");
    let page = api
        .storage
        .list(&crds.key_prefix(), ListOptions::default())
        .await?;
    for kv in page.kvs {
        // One unreadable record must not stop start-up: the other CRDs are still served.
        match crate::watchcache::decode(&kv.value, kv.mod_revision) {
            Ok(crd) => after_write(api, &crd),
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e, "skipping a stored CustomResourceDefinition the server cannot read")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}})
    }

    #[test]
    fn accepts_a_well_formed_crd_and_reports_established() {
        let mut c = crd();
        assert!(validate(&c, None).is_empty(), "{:?}", validate(&c, None));
        set_status(&mut c, None);
        assert_eq!(c["status"]["conditions"][1]["type"], "Established");
        assert_eq!(c["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(c["status"]["acceptedNames"]["singular"], "widget");
    }

    #[test]
    fn rejects_wrong_names_and_non_structural_schemas() {
        let mut c = crd();
        c["metadata"]["name"] = json!("widget.example.com");
        c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            json!({"properties": {}});
        let fields: Vec<String> = validate(&c, None).into_iter().map(|c| c.field).collect();
        assert!(fields.contains(&"metadata.name".to_string()), "{fields:?}");
        assert!(
            fields.iter().any(|f| f.ends_with("properties[spec].type")),
            "{fields:?}"
        );
    }
}
