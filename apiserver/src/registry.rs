//! The set of served resources, each registered from a CustomResourceDefinition object.
//!
//! Built-in kinds come from the generated manifests in `crds/` (compiled in); user CRDs
//! are added the same way. Lookups take a cheap snapshot (`Arc`) so a registration never
//! blocks requests in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/builtin_crds.rs"));

/// How the `/scale` subresource maps onto an object.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// The version objects are stored in (the same key serves every version).
    pub storage_version: String,
    /// The group whose store holds the objects: the resource's own, except for a view
    /// of another group's store (events.k8s.io Events are core Events, see
    /// `crate::conversion`), where `storage_version` is that group's.
    pub storage_group: String,
    /// The CRD version's `additionalPrinterColumns`, if any.
    pub printer_columns: Option<Value>,
    /// The version's `openAPIV3Schema`, if the CRD has one (see [`Resource::schema`]).
    pub schema: Schema,
    /// Whether objects carry a spec whose changes bump `metadata.generation`.
    pub has_spec: bool,
    pub builtin: bool,
    /// Whether objects are stored: false for the review kinds (TokenReview,
    /// SubjectAccessReview...), answered at once by `api::reviews` and create-only.
    pub stored: bool,
    /// The CRD is being deleted: its objects are read, changed and deleted as usual,
    /// but no new one is created.
    pub terminating: bool,
    /// A user CRD version whose schema declares defaults: its objects are read with them
    /// applied (decided once here, not per object read).
    pub defaults_on_read: bool,
    /// A user CRD's `spec.conversion.webhook` when its strategy is Webhook: objects
    /// change version through it (`crate::conversion::webhook`).
    pub conversion_webhook: Option<Arc<Value>>,
}

/// A version's schema: parsed from a user CRD, or a built-in's JSON text compiled into
/// the binary and parsed on first use (most kinds' schemas are never needed).
#[derive(Clone, Debug, Default)]
pub enum Schema {
    #[default]
    None,
    Parsed(Arc<Value>),
    Builtin(&'static str, Arc<std::sync::OnceLock<Option<Arc<Value>>>>),
}

impl Resource {
    /// The version's `openAPIV3Schema`, if any.
    pub fn schema(&self) -> Option<Arc<Value>> {
        match &self.schema {
            Schema::None => None,
            Schema::Parsed(s) => Some(s.clone()),
            Schema::Builtin(text, cell) => cell
                .get_or_init(|| serde_json::from_str(text).ok().map(Arc::new))
                .clone(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key prefix of all objects of this resource (every version shares it, and
    /// so does a view of the same store).
    pub fn key_prefix(&self) -> String {
        let group = if self.storage_group.is_empty() {
            "core"
        } else {
            &self.storage_group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// Storage key prefix for a namespace (or the whole resource when `None`).
    pub fn prefix_in(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix_in(namespace))
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.group == crate::api::metrics::GROUP {
            // Computed from the nodes' samples on every read (`api::metrics`).
            return vec!["get", "list"];
        }
        if !self.stored {
            return vec!["create"];
        }
        if self.group.is_empty() && self.plural == "componentstatuses" {
            // Computed on every read (`api::componentstatus`), as upstream.
            return vec!["get", "list"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[derive(Debug, thiserror::Error)]
#[error("CustomResourceDefinition {name}: {problem}")]
pub struct CrdError {
    pub name: String,
    pub problem: String,
}

/// Turns a CRD object into the resources it serves (one per served version).
pub fn resources_from_crd(crd: &Value, builtin: bool) -> Result<Vec<Resource>, CrdError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let err = |problem: &str| CrdError {
        name: name.clone(),
        problem: problem.to_string(),
    };
    let spec = crd.get("spec").ok_or_else(|| err("spec is missing"))?;
    let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let strings = |v: &Value, p: &str| -> Vec<String> {
        v.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = s(spec, "/group").unwrap_or_default();
    let kind = s(spec, "/names/kind").ok_or_else(|| err("spec.names.kind is missing"))?;
    let plural = s(spec, "/names/plural").ok_or_else(|| err("spec.names.plural is missing"))?;
    let singular = s(spec, "/names/singular").unwrap_or_else(|| kind.to_lowercase());
    let list_kind = s(spec, "/names/listKind").unwrap_or_else(|| format!("{kind}List"));
    let namespaced = s(spec, "/scope").as_deref() != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| err("spec.versions is missing"))?;
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| s(v, "/name"))
        .ok_or_else(|| err("no storage version"))?;
    let (storage_group, storage_version) = match crate::conversion::storage_of(&group, &plural) {
        Some((g, v)) if builtin => (g.to_string(), v.to_string()),
        _ => (group.clone(), storage_version),
    };
    let conversion_webhook = (!builtin
        && s(spec, "/conversion/strategy").as_deref() == Some("Webhook"))
    .then(|| spec.pointer("/conversion/webhook").cloned())
    .flatten()
    .map(Arc::new);
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let version = s(v, "/name").ok_or_else(|| err("a version has no name"))?;
        let scale = v.pointer("/subresources/scale").map(|sc| ScaleSpec {
            spec_replicas_path: s(sc, "/specReplicasPath")
                .unwrap_or_else(|| ".spec.replicas".into()),
            status_replicas_path: s(sc, "/statusReplicasPath")
                .unwrap_or_else(|| ".status.replicas".into()),
            label_selector_path: s(sc, "/labelSelectorPath"),
        });
        let props = v.pointer("/schema/openAPIV3Schema/properties");
        out.push(Resource {
            group: group.clone(),
            version,
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: strings(spec, "/names/shortNames"),
            categories: strings(spec, "/names/categories"),
            namespaced,
            status: v.pointer("/subresources/status").is_some(),
            scale,
            storage_version: storage_version.clone(),
            storage_group: storage_group.clone(),
            printer_columns: v.get("additionalPrinterColumns").cloned(),
            schema: v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .map_or(Schema::None, |s| Schema::Parsed(Arc::new(s))),
            // User CRDs always track generation; built-ins only when they have a spec.
            has_spec: !builtin
                || props.is_some_and(|p| p.get("spec").is_some())
                || v.get("x-kybern-schema-has-spec").and_then(Value::as_bool) == Some(true),
            builtin,
            stored: true,
            terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
            defaults_on_read: !builtin
                && v.pointer("/schema/openAPIV3Schema")
                    .is_some_and(declares_default),
            conversion_webhook: conversion_webhook.clone(),
        });
    }
    Ok(out)
}

/// The review kinds: (group, version, kind, plural, namespaced). Served create-only and
/// never stored, as upstream's authentication and authorization groups.
pub const REVIEWS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
];

/// Whether a schema declares a `default` anywhere.
fn declares_default(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("default") || m.values().any(declares_default),
        Value::Array(a) => a.iter().any(declares_default),
        _ => false,
    }
}

/// The served, never stored resource of one [`REVIEWS`] entry.
fn review(
    &(group, version, kind, plural, namespaced): &(&str, &str, &str, &str, bool),
) -> Resource {
    Resource {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        short_names: Vec::new(),
        categories: Vec::new(),
        namespaced,
        status: false,
        scale: None,
        storage_version: version.into(),
        storage_group: group.into(),
        printer_columns: None,
        schema: Schema::None,
        has_spec: true,
        builtin: true,
        stored: false,
        terminating: false,
        defaults_on_read: false,
        conversion_webhook: None,
    }
}

/// An immutable view of every served resource.
#[derive(Default, Debug)]
pub struct Snapshot {
    /// (group, version, plural) -> resource.
    by_gvr: BTreeMap<(String, String, String), Arc<Resource>>,
}

impl Snapshot {
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<Resource>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    pub fn resources(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.by_gvr.values()
    }

    /// Groups and their versions, most preferred version first, in discovery order
    /// (the core group "" first, then built-in groups, then the rest by name).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut builtin: BTreeMap<&str, bool> = BTreeMap::new();
        for ((g, v, _), r) in &self.by_gvr {
            let versions = groups.entry(g).or_default();
            if !versions.contains(v) {
                versions.push(v.clone());
            }
            builtin.insert(g, r.builtin);
        }
        let mut out: Vec<(String, Vec<String>)> = groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
                (g.to_string(), vs)
            })
            .collect();
        out.sort_by_key(|(g, _)| (!g.is_empty(), !builtin[g.as_str()], g.clone()));
        out
    }

    /// The resources of one group/version, in name order.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<&Arc<Resource>> {
        self.by_gvr
            .values()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first (v2 > v1 > v1beta2).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let (stage, n) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        return (0, 0, 0);
    };
    (stage, major, n)
}

/// The registry of served resources.
#[derive(Default)]
pub struct Registry {
    current: RwLock<Arc<Snapshot>>,
}

impl Registry {
    /// A registry serving every built-in kind from `crds/`.
    pub fn with_builtins() -> Result<Self, CrdError> {
        let registry = Registry::default();
        for (file, text, schemas) in BUILTIN_CRDS {
            let crd: Value = serde_json::from_str(text).map_err(|e| CrdError {
                name: file.to_string(),
                problem: format!("not valid JSON: {e}"),
            })?;
            let mut resources = resources_from_crd(&crd, true)?;
            for r in &mut resources {
                if let Some((_, schema)) = schemas.iter().find(|(v, _)| *v == r.version) {
                    r.schema = Schema::Builtin(schema, Default::default());
                }
            }
            registry.insert(resources);
        }
        for r in REVIEWS {
            registry.insert(vec![review(r)]);
        }
        for (kind, plural, namespaced, columns) in crate::api::metrics::resources() {
            let group = crate::api::metrics::GROUP;
            let mut r = review(&(
                group,
                crate::api::metrics::VERSION,
                kind,
                plural,
                namespaced,
            ));
            r.printer_columns = Some(columns);
            r.has_spec = false;
            registry.insert(vec![r]);
        }
        Ok(registry)
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("registry lock poisoned").clone()
    }

    /// Serves (or re-serves, replacing the old definition) the versions of a CRD.
    pub fn register(&self, crd: &Value, builtin: bool) -> Result<(), CrdError> {
        self.insert(resources_from_crd(crd, builtin)?);
        Ok(())
    }

    fn insert(&self, resources: Vec<Resource>) {
        let mut current = self.current.write().expect("registry lock poisoned");
        let mut by_gvr = current.by_gvr.clone();
        if let Some(first) = resources.first() {
            by_gvr.retain(|(g, _, p), _| !(g == &first.group && p == &first.plural));
        }
        for r in resources {
            by_gvr.insert(
                (r.group.clone(), r.version.clone(), r.plural.clone()),
                Arc::new(r),
            );
        }
        *current = Arc::new(Snapshot { by_gvr });
    }

    /// Stops serving a group/resource.
    pub fn unregister(&self, group: &str, plural: &str) {
        let mut current = self.current.write().expect("registry lock poisoned");
        let mut by_gvr = current.by_gvr.clone();
        by_gvr.retain(|(g, _, p), _| !(g == group && p == plural));
        *current = Arc::new(Snapshot { by_gvr });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_does() {
        let mut vs = vec!["v1beta1", "v1", "v2", "v1alpha1", "v2beta2", "foo"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            vs,
            vec!["v2", "v1", "v2beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    #[test]
    fn builtins_serve_core_apps_and_batch_kinds() {
        let reg = Registry::with_builtins().expect("builtin CRDs load");
        let snap = reg.snapshot();
        let pods = snap.get("", "v1", "pods").expect("pods served");
        assert!(pods.namespaced && pods.status && pods.has_spec);
        let schema = pods.schema().expect("pods have a schema");
        assert!(schema
            .pointer("/properties/spec/properties/containers")
            .is_some());
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        let deploy = snap
            .get("apps", "v1", "deployments")
            .expect("deployments served");
        assert!(deploy.scale.is_some());
        let ns = snap.get("", "v1", "namespaces").expect("namespaces served");
        assert!(!ns.namespaced);
        assert!(snap.get("batch", "v1", "cronjobs").is_some());
        let cm = snap.get("", "v1", "configmaps").expect("configmaps served");
        assert!(!cm.has_spec && !cm.status);
        let groups = snap.groups();
        assert_eq!(groups[0].0, "");
        let autoscaling = groups
            .iter()
            .find(|(g, _)| g == "autoscaling")
            .expect("autoscaling");
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }
}
