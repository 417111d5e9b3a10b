//! Generator of `crds/`: one apiextensions.k8s.io/v1 CustomResourceDefinition
//! per built-in kind, built from k8s-openapi's schemars schemas.
//!
//! `cargo run -p crdgen -- crds` writes the files, `cargo run -p crdgen --
//! --check crds` verifies them.

pub mod protobuf;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// The command that regenerates `crds/` (from the workspace root).
pub const REGENERATE: &str = "cargo run -p crdgen -- crds";

/// The CRD `spec.scope` of a k8s-openapi resource scope.
pub trait ScopeName {
    const NAME: &'static str;
}
impl ScopeName for NamespaceResourceScope {
    const NAME: &'static str = "Namespaced";
}
impl ScopeName for ClusterResourceScope {
    const NAME: &'static str = "Cluster";
}

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub schema: Value,
}

/// A CRD under construction.
#[derive(Debug, Clone)]
pub struct Crd {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub scope: &'static str,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub scale: bool,
    pub versions: Vec<Version>,
}

/// The structural schema of `T`.
pub fn schema_of<T: JsonSchema>() -> anyhow::Result<Value> {
    let mut generator = schemars::SchemaGenerator::default();
    let root = generator.subschema_for::<T>();
    let defs = generator.take_definitions(true);
    let name = match root.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .unwrap_or(r)
            .replace("~1", "/")
            .replace("~0", "~"),
        None => anyhow::bail!(
            "schema of {} was inlined, expected a $ref",
            T::schema_name()
        ),
    };
    schema::structural(&name, &defs)
}

impl Crd {
    /// A CRD whose only version (served, storage) is `T`'s.
    pub fn of<T>() -> anyhow::Result<Crd>
    where
        T: Resource + JsonSchema,
        T::Scope: ScopeName,
    {
        Ok(Crd {
            group: T::GROUP.to_owned(),
            kind: T::KIND.to_owned(),
            plural: T::URL_PATH_SEGMENT.to_owned(),
            scope: <T::Scope as ScopeName>::NAME,
            short_names: Vec::new(),
            categories: Vec::new(),
            scale: false,
            versions: vec![Version {
                name: T::VERSION.to_owned(),
                served: true,
                storage: true,
                schema: schema_of::<T>()?,
            }],
        })
    }

    /// Add `T` as another served version; if `storage`, it becomes the
    /// (only) storage version.
    pub fn version<T>(mut self, storage: bool) -> anyhow::Result<Crd>
    where
        T: Resource + JsonSchema,
        T::Scope: ScopeName,
    {
        anyhow::ensure!(
            T::GROUP == self.group
                && T::KIND == self.kind
                && T::URL_PATH_SEGMENT == self.plural
                && <T::Scope as ScopeName>::NAME == self.scope,
            "{} {} is not another version of {}/{}",
            T::API_VERSION,
            T::KIND,
            self.group,
            self.kind
        );
        if storage {
            for v in &mut self.versions {
                v.storage = false;
            }
        }
        self.versions.push(Version {
            name: T::VERSION.to_owned(),
            served: true,
            storage,
            schema: schema_of::<T>()?,
        });
        Ok(self)
    }

    pub fn short(mut self, names: &[&str]) -> Crd {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn categories(mut self, cats: &[&str]) -> Crd {
        self.categories = cats.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Give every version the scale subresource (.spec.replicas,
    /// .status.replicas, .status.selector).
    pub fn scale(mut self) -> Crd {
        self.scale = true;
        self
    }

    /// `<plural>.<group>`, or `<plural>` for the core group.
    pub fn name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `crds/` file name: `<group-or-core>_<plural>.yaml`.
    pub fn file_name(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("{group}_{}.yaml", self.plural)
    }

    /// The CRD object.
    pub fn to_value(&self) -> Value {
        let mut names = Map::new();
        names.insert("plural".into(), self.plural.clone().into());
        names.insert("singular".into(), self.kind.to_lowercase().into());
        names.insert("kind".into(), self.kind.clone().into());
        names.insert("listKind".into(), format!("{}List", self.kind).into());
        if !self.short_names.is_empty() {
            names.insert("shortNames".into(), json!(self.short_names));
        }
        if !self.categories.is_empty() {
            names.insert("categories".into(), json!(self.categories));
        }
        let versions: Vec<Value> = self
            .versions
            .iter()
            .map(|v| {
                let mut subresources = Map::new();
                let has_status = v
                    .schema
                    .get("properties")
                    .and_then(|p| p.get("status"))
                    .is_some();
                if has_status {
                    subresources.insert("status".into(), json!({}));
                }
                if self.scale {
                    subresources.insert(
                        "scale".into(),
                        json!({
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        }),
                    );
                }
                let mut out = Map::new();
                out.insert("name".into(), v.name.clone().into());
                out.insert("served".into(), v.served.into());
                out.insert("storage".into(), v.storage.into());
                out.insert("schema".into(), json!({ "openAPIV3Schema": v.schema }));
                if !subresources.is_empty() {
                    out.insert("subresources".into(), Value::Object(subresources));
                }
                Value::Object(out)
            })
            .collect();
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": self.name() },
            "spec": {
                "group": self.group,
                "scope": self.scope,
                "names": Value::Object(names),
                "versions": versions,
            },
        })
    }

    /// The CRD as YAML, as written to `crds/`.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        Ok(serde_yaml::to_string(&self.to_value())?)
    }
}

/// Every built-in kind, one entry per CRD.
pub fn all_crds() -> anyhow::Result<Vec<Crd>> {
    const ALL: &[&str] = &["all"];
    const API_EXT: &[&str] = &["api-extensions"];
    let crds = vec![
        // core/v1
        Crd::of::<core::ComponentStatus>()?.short(&["cs"]),
        Crd::of::<core::ConfigMap>()?.short(&["cm"]),
        Crd::of::<core::Endpoints>()?.short(&["ep"]),
        Crd::of::<core::Event>()?.short(&["ev"]),
        Crd::of::<core::LimitRange>()?.short(&["limits"]),
        Crd::of::<core::Namespace>()?.short(&["ns"]),
        Crd::of::<core::Node>()?.short(&["no"]),
        Crd::of::<core::PersistentVolume>()?.short(&["pv"]),
        Crd::of::<core::PersistentVolumeClaim>()?.short(&["pvc"]),
        Crd::of::<core::Pod>()?.short(&["po"]).categories(ALL),
        Crd::of::<core::PodTemplate>()?,
        Crd::of::<core::ReplicationController>()?
            .short(&["rc"])
            .categories(ALL)
            .scale(),
        Crd::of::<core::ResourceQuota>()?.short(&["quota"]),
        Crd::of::<core::Secret>()?,
        Crd::of::<core::Service>()?.short(&["svc"]).categories(ALL),
        Crd::of::<core::ServiceAccount>()?.short(&["sa"]),
        // admissionregistration.k8s.io/v1 (stored; calling webhooks and evaluating
        // policies is admission's business)
        Crd::of::<admissionregistration::MutatingWebhookConfiguration>()?.categories(API_EXT),
        Crd::of::<admissionregistration::ValidatingAdmissionPolicy>()?.categories(API_EXT),
        Crd::of::<admissionregistration::ValidatingAdmissionPolicyBinding>()?.categories(API_EXT),
        Crd::of::<admissionregistration::ValidatingWebhookConfiguration>()?.categories(API_EXT),
        // apiregistration.k8s.io/v1
        Crd::of::<apiregistration::APIService>()?.categories(API_EXT),
        // apps/v1
        Crd::of::<apps::ControllerRevision>()?,
        Crd::of::<apps::DaemonSet>()?.short(&["ds"]).categories(ALL),
        Crd::of::<apps::Deployment>()?
            .short(&["deploy"])
            .categories(ALL)
            .scale(),
        Crd::of::<apps::ReplicaSet>()?
            .short(&["rs"])
            .categories(ALL)
            .scale(),
        Crd::of::<apps::StatefulSet>()?
            .short(&["sts"])
            .categories(ALL)
            .scale(),
        // autoscaling: v1 served, v2 served + storage
        Crd::of::<autoscaling1::HorizontalPodAutoscaler>()?
            .version::<autoscaling2::HorizontalPodAutoscaler>(true)?
            .short(&["hpa"])
            .categories(ALL),
        // batch/v1
        Crd::of::<batch::CronJob>()?.short(&["cj"]).categories(ALL),
        Crd::of::<batch::Job>()?.categories(ALL),
        // certificates.k8s.io/v1 (the /approval subresource is the apiserver's)
        Crd::of::<certificates::CertificateSigningRequest>()?.short(&["csr"]),
        // coordination.k8s.io/v1
        Crd::of::<coordination::Lease>()?,
        // discovery.k8s.io/v1
        Crd::of::<discovery::EndpointSlice>()?,
        // events.k8s.io/v1
        Crd::of::<events::Event>()?.short(&["ev"]),
        // flowcontrol.apiserver.k8s.io/v1
        Crd::of::<flowcontrol::FlowSchema>()?,
        Crd::of::<flowcontrol::PriorityLevelConfiguration>()?,
        // networking.k8s.io/v1
        Crd::of::<networking::IPAddress>()?.short(&["ip"]),
        Crd::of::<networking::Ingress>()?.short(&["ing"]),
        Crd::of::<networking::IngressClass>()?,
        Crd::of::<networking::NetworkPolicy>()?.short(&["netpol"]),
        Crd::of::<networking::ServiceCIDR>()?,
        // node.k8s.io/v1
        Crd::of::<node::RuntimeClass>()?,
        // policy/v1
        Crd::of::<policy::PodDisruptionBudget>()?.short(&["pdb"]),
        // rbac.authorization.k8s.io/v1
        Crd::of::<rbac::ClusterRole>()?,
        Crd::of::<rbac::ClusterRoleBinding>()?,
        Crd::of::<rbac::Role>()?,
        Crd::of::<rbac::RoleBinding>()?,
        // scheduling.k8s.io/v1
        Crd::of::<scheduling::PriorityClass>()?.short(&["pc"]),
        // storage.k8s.io/v1
        Crd::of::<storage::CSIDriver>()?,
        Crd::of::<storage::CSINode>()?,
        Crd::of::<storage::CSIStorageCapacity>()?,
        Crd::of::<storage::StorageClass>()?.short(&["sc"]),
        Crd::of::<storage::VolumeAttachment>()?,
        // apiextensions.k8s.io/v1
        Crd::of::<apiextensions::CustomResourceDefinition>()?
            .short(&["crd", "crds"])
            .categories(&["api-extensions"]),
    ];
    Ok(crds)
}

/// Kinds the API server answers but never stores (the review endpoints: a create that
/// returns the object with its status filled). They have no CRD in `crds/`; their
/// protobuf messages are in `protobuf/` all the same, since `kubectl auth can-i` posts a
/// SelfSubjectAccessReview in protobuf.
pub fn review_kinds() -> anyhow::Result<Vec<Crd>> {
    use k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz};
    Ok(vec![
        Crd::of::<authn::SelfSubjectReview>()?,
        Crd::of::<authn::TokenReview>()?,
        Crd::of::<authz::LocalSubjectAccessReview>()?,
        Crd::of::<authz::SelfSubjectAccessReview>()?,
        Crd::of::<authz::SelfSubjectRulesReview>()?,
        Crd::of::<authz::SubjectAccessReview>()?,
    ])
}

/// The README written next to the CRDs.
pub fn readme(crds: &[Crd]) -> String {
    let mut s = String::from(
        "# crds/ (generated, do not edit)\n\n\
         One apiextensions.k8s.io/v1 CustomResourceDefinition per built-in kind, generated\n\
         by the `crdgen` crate from k8s-openapi's schemas (feature `schemars`, Kubernetes 1.33).\n\n\
         Regenerate (from the workspace root):\n\n    cargo run -p crdgen -- crds\n\n\
         Check that they are up to date (also run by `cargo test -p crdgen`):\n\n    cargo run -p crdgen -- --check crds\n\n\
         Files:\n\n",
    );
    for c in crds {
        s.push_str(&format!(
            "- `{}`: {} ({})\n",
            c.file_name(),
            c.kind,
            c.name()
        ));
    }
    s
}

/// Every file of `crds/`, by file name.
pub fn generate() -> anyhow::Result<BTreeMap<String, String>> {
    let crds = all_crds()?;
    let mut files = BTreeMap::new();
    for c in &crds {
        let prev = files.insert(c.file_name(), c.to_yaml()?);
        anyhow::ensure!(prev.is_none(), "two CRDs write {}", c.file_name());
    }
    files.insert("README.md".to_owned(), readme(&crds));
    Ok(files)
}

/// Differences between `dir` and what the generator produces now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    pub missing: Vec<String>,
    pub stale: Vec<String>,
    pub extra: Vec<String>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty() && self.extra.is_empty()
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for m in &self.missing {
            writeln!(f, "missing: {m}")?;
        }
        for s in &self.stale {
            writeln!(f, "stale:   {s}")?;
        }
        for e in &self.extra {
            writeln!(f, "extra:   {e}")?;
        }
        Ok(())
    }
}

/// Compare `dir` with `files`.
pub fn check(dir: &Path, files: &BTreeMap<String, String>) -> anyhow::Result<Drift> {
    let mut drift = Drift::default();
    for (name, text) in files {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if &on_disk == text => {}
            Ok(_) => drift.stale.push(name.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => drift.missing.push(name.clone()),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", dir.join(name).display())),
        }
    }
    if dir.is_dir() {
        let mut extra = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !files.contains_key(&name) {
                extra.push(name);
            }
        }
        extra.sort();
        drift.extra = extra;
    }
    Ok(drift)
}

/// Write `files` into `dir`, removing generated-looking files (`*.yaml`) that
/// are no longer produced.
pub fn write(dir: &Path, files: &BTreeMap<String, String>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !files.contains_key(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk every schema node of `node`, calling `f(path, node)`.
    fn visit(path: &str, node: &Value, f: &mut dyn FnMut(&str, &Map<String, Value>)) {
        let Some(obj) = node.as_object() else {
            panic!("{path}: schema is not an object: {node}");
        };
        f(path, obj);
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                visit(&format!("{path}.{k}"), v, f);
            }
        }
        if let Some(items) = obj.get("items") {
            visit(&format!("{path}[]"), items, f);
        }
        if let Some(ap @ Value::Object(_)) = obj.get("additionalProperties") {
            visit(&format!("{path}{{}}"), ap, f);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(alts)) = obj.get(key) {
                for (i, a) in alts.iter().enumerate() {
                    visit(&format!("{path}/{key}[{i}]"), a, f);
                }
            }
        }
    }

    #[test]
    fn every_schema_is_structural() {
        let crds = all_crds().unwrap();
        for crd in &crds {
            for v in &crd.versions {
                let ctx = format!("{} {}", crd.file_name(), v.name);
                let mut problems = Vec::new();
                visit("", &v.schema, &mut |path, obj| {
                    for forbidden in [
                        "$ref",
                        "$schema",
                        "$defs",
                        "definitions",
                        "title",
                        "nullable",
                    ] {
                        if obj.contains_key(forbidden) {
                            problems.push(format!("{path}: has {forbidden}"));
                        }
                    }
                    match obj.get("type") {
                        Some(Value::String(_)) => {}
                        Some(other) => {
                            problems.push(format!("{path}: type is not a string: {other}"))
                        }
                        None => {
                            let int_or_string =
                                obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
                            let preserve = obj.get("x-kubernetes-preserve-unknown-fields")
                                == Some(&Value::Bool(true));
                            if !int_or_string && !preserve {
                                problems.push(format!("{path}: no type"));
                            }
                        }
                    }
                    if obj.contains_key("x-kubernetes-int-or-string") && obj.contains_key("type") {
                        problems.push(format!("{path}: int-or-string with a type"));
                    }
                    for key in ["allOf", "anyOf", "oneOf", "not"] {
                        if obj.contains_key(key) {
                            problems.push(format!("{path}: has {key}"));
                        }
                    }
                });
                assert!(
                    problems.is_empty(),
                    "{ctx} not structural:\n{}",
                    problems.join("\n")
                );
                assert_eq!(v.schema["type"], "object", "{ctx}: root type");
                assert_eq!(
                    v.schema["properties"]["metadata"],
                    json!({"type": "object"}),
                    "{ctx}: metadata"
                );
            }
        }
    }

    fn find<'a>(crds: &'a [Crd], file: &str) -> &'a Crd {
        crds.iter()
            .find(|c| c.file_name() == file)
            .unwrap_or_else(|| panic!("no {file}"))
    }

    #[test]
    fn pods() {
        let crds = all_crds().unwrap();
        let pods = find(&crds, "core_pods.yaml");
        assert_eq!(pods.name(), "pods");
        let crd = pods.to_value();
        assert_eq!(crd["spec"]["group"], "");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["po"]));
        assert_eq!(crd["spec"]["names"]["categories"], json!(["all"]));
        assert_eq!(crd["spec"]["names"]["listKind"], "PodList");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["subresources"], json!({"status": {}}));
        let schema = &v["schema"]["openAPIV3Schema"];
        assert_eq!(schema["properties"]["status"]["type"], "object");
        let containers = &schema["properties"]["spec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(containers["items"]["type"], "object");
        assert!(containers["items"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("name")));
        assert_eq!(
            schema["properties"]["spec"]["required"],
            json!(["containers"])
        );
        // Quantity and IntOrString.
        let resources = &containers["items"]["properties"]["resources"]["properties"];
        assert_eq!(resources["limits"]["type"], "object");
        assert_eq!(
            resources["limits"]["additionalProperties"]["x-kubernetes-int-or-string"],
            true
        );
        let port = &containers["items"]["properties"]["livenessProbe"]["properties"]["httpGet"]
            ["properties"]["port"];
        assert_eq!(port["x-kubernetes-int-or-string"], true);
        assert!(port.get("type").is_none());
        // Time.
        let start = &schema["properties"]["status"]["properties"]["startTime"];
        assert_eq!(start["type"], "string");
        assert_eq!(start["format"], "date-time");
    }

    #[test]
    fn scale_and_versions() {
        let crds = all_crds().unwrap();
        let deploy = find(&crds, "apps_deployments.yaml").to_value();
        assert_eq!(deploy["metadata"]["name"], "deployments.apps");
        assert_eq!(
            deploy["spec"]["versions"][0]["subresources"]["scale"],
            json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"})
        );
        let hpa = find(&crds, "autoscaling_horizontalpodautoscalers.yaml");
        let names: Vec<_> = hpa
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(names, [("v1", true, false), ("v2", true, true)]);
        assert_ne!(hpa.versions[0].schema, hpa.versions[1].schema);
        let cm = find(&crds, "core_configmaps.yaml").to_value();
        assert!(cm["spec"]["versions"][0].get("subresources").is_none());
        let ns = find(&crds, "core_namespaces.yaml");
        assert_eq!(ns.scope, "Cluster");
    }

    #[test]
    fn recursion_and_free_form() {
        let crds = all_crds().unwrap();
        let crd = find(&crds, "apiextensions.k8s.io_customresourcedefinitions.yaml");
        assert_eq!(crd.name(), "customresourcedefinitions.apiextensions.k8s.io");
        let props = &crd.versions[0].schema["properties"]["spec"]["properties"]["versions"]
            ["items"]["properties"]["schema"]["properties"]["openAPIV3Schema"]["properties"];
        // JSONSchemaProps inlined once, its self references cut.
        assert_eq!(props["type"]["type"], "string");
        assert_eq!(
            props["properties"]["additionalProperties"],
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            props["default"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        let rev = find(&crds, "apps_controllerrevisions.yaml");
        assert_eq!(
            rev.versions[0].schema["properties"]["data"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }

    #[test]
    fn nullable_forms_are_flattened() {
        let defs: Map<String, Value> = serde_json::from_value(json!({
            "A": {
                "title": "A",
                "type": "object",
                "properties": {
                    "s": {"type": ["string", "null"], "description": "d"},
                    "b": {"description": "field", "anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]},
                    "n": {"type": "integer", "nullable": true},
                },
            },
            "B": {"description": "type", "type": "object", "properties": {"x": {"type": "boolean"}}},
        }))
        .unwrap();
        let out = schema::structural("A", &defs).unwrap();
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "s": {"type": "string", "description": "d"},
                    "b": {"description": "field", "type": "object", "properties": {"x": {"type": "boolean"}}},
                    "n": {"type": "integer"},
                },
            })
        );
    }
}
