//! Upstream's storage admission plugins: `DefaultStorageClass` gives a created claim
//! that names no class the default StorageClass (the newest one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"`), and
//! `StorageObjectInUseProtection` puts the `kubernetes.io/pvc-protection` and
//! `kubernetes.io/pv-protection` finalizers on new claims and volumes at once (the
//! persistent volume binder, `controllers/src/pvbinder.rs`, removes them when nothing
//! uses the object any more).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{AdmissionRequest, MutatingAdmission, Operation};
use crate::api::Api;
use crate::status::Result;

const DEFAULT_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn creates(request: &AdmissionRequest<'_>, plural: &str) -> bool {
    request.operation == Operation::Create
        && request.subresource.is_none()
        && request.resource.group.is_empty()
        && request.resource.plural == plural
}

pub struct DefaultStorageClass;

/// The default class: of several, the newest, then by name (upstream's GetDefaultClass).
fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| {
            DEFAULT_ANNOTATIONS.iter().any(|a| {
                c.pointer("/metadata/annotations")
                    .and_then(|m| m.get(*a))
                    .and_then(Value::as_str)
                    == Some("true")
            })
        })
        .max_by(|a, b| {
            let created = |c: &Value| {
                crate::object::meta_str(c, "creationTimestamp")
                    .unwrap_or("")
                    .to_string()
            };
            created(a)
                .cmp(&created(b))
                .then_with(|| crate::object::name(b).cmp(crate::object::name(a)))
        })
}

#[async_trait]
impl MutatingAdmission for DefaultStorageClass {
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        if !creates(request, "persistentvolumeclaims") {
            return Ok(());
        }
        let has_class = obj
            .pointer("/spec/storageClassName")
            .is_some_and(|c| !c.is_null())
            || obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
                .is_some();
        if has_class {
            return Ok(());
        }
        let snap = api.registry.snapshot();
        let Some(res) = snap.get("storage.k8s.io", "v1", "storageclasses") else {
            return Ok(());
        };
        let (classes, _) = api.cache(res).await?.list(&res.prefix_in(None));
        let classes: Vec<Value> = classes.iter().map(|c| (**c).clone()).collect();
        if let Some(class) = default_class(&classes) {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["storageClassName"] = json!(crate::object::name(class));
        }
        Ok(())
    }
}

pub struct StorageObjectInUseProtection;

#[async_trait]
impl MutatingAdmission for StorageObjectInUseProtection {
    async fn admit(
        &self,
        _api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<()> {
        let finalizer = if creates(request, "persistentvolumeclaims") {
            "kubernetes.io/pvc-protection"
        } else if creates(request, "persistentvolumes") {
            "kubernetes.io/pv-protection"
        } else {
            return Ok(());
        };
        let meta = crate::object::metadata_mut(obj);
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        if let Some(list) = list.as_array_mut() {
            if !list.iter().any(|f| f == finalizer) {
                list.push(json!(finalizer));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_annotated_class_is_the_default() {
        let class = |name: &str, created: &str, default: &str| json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": {"storageclass.kubernetes.io/is-default-class": default}}});
        let cases = [
            (
                "none annotated",
                vec![class("a", "2024-01-01T00:00:00Z", "false")],
                None,
            ),
            (
                "the annotated one",
                vec![
                    class("a", "2024-01-01T00:00:00Z", "false"),
                    class("b", "2023-01-01T00:00:00Z", "true"),
                ],
                Some("b"),
            ),
            (
                "the newest of two",
                vec![
                    class("old", "2023-01-01T00:00:00Z", "true"),
                    class("new", "2024-01-01T00:00:00Z", "true"),
                ],
                Some("new"),
            ),
        ];
        for (name, classes, want) in cases {
            assert_eq!(
                default_class(&classes).map(crate::object::name),
                want,
                "{name}"
            );
        }
    }
}
