//! StorageClasses: the default `local-path` class made at start (k3s ships it as a
//! manifest), which class a claim asks for, and upstream's choice of the default class
//! for claims that name none.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use super::{Error, Result, DEFAULT_CLASS, PROVISIONER};

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The pre-1.6 way to name a claim's class; upstream still lets it win over the field.
const BETA_CLAIM_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The `local-path` class: default, volumes deleted with their claim, bound where the
/// first consumer runs.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                DEFAULT_CLASS_ANNOTATION.into(),
                "true".into(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..StorageClass::default()
    }
}

/// Creates the `local-path` class when absent; one a user changed is left as it is.
pub async fn ensure_default_class(client: &kube::Client) -> Result<()> {
    let api = Api::<StorageClass>::all(client.clone());
    let err = Error::api("creating", format!("StorageClass {DEFAULT_CLASS}"));
    match api.create(&PostParams::default(), &default_class()).await {
        Ok(_) => {
            tracing::info!(class = DEFAULT_CLASS, "created the default StorageClass");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(err(e)),
    }
}

fn is_default(sc: &StorageClass) -> bool {
    let a = sc.annotations();
    a.get(DEFAULT_CLASS_ANNOTATION)
        .or_else(|| a.get(BETA_DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Upstream's default class: of those annotated default, the newest (ties by name), so
/// adding a second default class switches new claims to it.
pub fn default_of<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes
        .into_iter()
        .filter(|sc| is_default(sc))
        .max_by(|a, b| {
            a.creation_timestamp()
                .cmp(&b.creation_timestamp())
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
}

/// The class a claim names: `Some("")` means explicitly none, `None` that it asked for
/// the default.
pub fn requested_class(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .annotations()
        .get(BETA_CLAIM_CLASS_ANNOTATION)
        .map(String::as_str)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
}

/// What a claim's class means for this provisioner.
#[derive(Debug, PartialEq)]
pub enum ClassOf {
    /// A class of ours, by name.
    Ours(StorageClass),
    /// No class named and ours is the default: the claim gets it written into its spec
    /// first (upstream's retroactive default class assignment).
    AssignDefault(StorageClass),
    /// Someone else's class, explicitly none, or a class that does not exist (yet).
    NotOurs,
}

pub fn class_of(claim: &PersistentVolumeClaim, classes: &[Arc<StorageClass>]) -> ClassOf {
    let ours = |sc: &StorageClass| sc.provisioner == PROVISIONER;
    match requested_class(claim) {
        Some("") => ClassOf::NotOurs,
        Some(name) => match classes.iter().find(|sc| sc.name_any() == name) {
            Some(sc) if ours(sc) => ClassOf::Ours(sc.as_ref().clone()),
            _ => ClassOf::NotOurs,
        },
        None => match default_of(classes.iter().map(Arc::as_ref)) {
            Some(sc) if ours(sc) => ClassOf::AssignDefault(sc.clone()),
            _ => ClassOf::NotOurs,
        },
    }
}

/// Unbound claims a class event may unblock: those naming it, and, when it is a
/// default class, those naming none.
pub fn waiting_claims(
    claims: &Store<PersistentVolumeClaim>,
    sc: &StorageClass,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let name = sc.name_any();
    let default = is_default(sc);
    claims
        .state()
        .iter()
        .filter(|c| {
            c.spec
                .as_ref()
                .is_none_or(|s| s.volume_name.as_deref().unwrap_or_default().is_empty())
        })
        .filter(|c| match requested_class(c) {
            Some(n) => n == name,
            None => default,
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn the_class_a_claim_gets() {
        let ours = class("fast", PROVISIONER);
        let theirs = class("ebs", "ebs.csi.aws.com");
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<StorageClass>, ClassOf)> = vec![
            (
                "names our class",
                claim("a").class("fast"),
                vec![ours.clone(), theirs.clone()],
                ClassOf::Ours(ours.clone()),
            ),
            (
                "names another provisioner's class",
                claim("a").class("ebs"),
                vec![ours.clone(), theirs.clone()],
                ClassOf::NotOurs,
            ),
            (
                "names a class that does not exist",
                claim("a").class("nope"),
                vec![ours.clone()],
                ClassOf::NotOurs,
            ),
            (
                "asks explicitly for no class",
                claim("a").class(""),
                vec![ours.clone().default_class()],
                ClassOf::NotOurs,
            ),
            (
                "names none and ours is the default",
                claim("a"),
                vec![ours.clone().default_class(), theirs.clone()],
                ClassOf::AssignDefault(ours.clone().default_class()),
            ),
            (
                "names none and the default is another's",
                claim("a"),
                vec![ours.clone(), theirs.clone().default_class()],
                ClassOf::NotOurs,
            ),
            (
                "names none and there is no default",
                claim("a"),
                vec![ours.clone()],
                ClassOf::NotOurs,
            ),
            (
                "the beta annotation wins over the field",
                claim("a")
                    .class("ebs")
                    .annotate(BETA_CLAIM_CLASS_ANNOTATION, "fast"),
                vec![ours.clone(), theirs.clone()],
                ClassOf::Ours(ours.clone()),
            ),
        ];
        for (name, claim, classes, want) in cases {
            let classes: Vec<Arc<StorageClass>> = classes.into_iter().map(Arc::new).collect();
            assert_eq!(class_of(&claim, &classes), want, "{name}");
        }
    }

    #[test]
    fn the_newest_default_class_wins() {
        let old = class("old", PROVISIONER).default_class().created(100);
        let new = class("new", "x.io/p").default_class().created(200);
        let plain = class("plain", PROVISIONER).created(300);
        assert_eq!(
            default_of([&old, &new, &plain]).map(|c| c.name_any()),
            Some("new".into())
        );
        assert_eq!(
            default_of([&old, &plain]).map(|c| c.name_any()),
            Some("old".into())
        );
        assert_eq!(default_of([&plain]), None);
    }
}
