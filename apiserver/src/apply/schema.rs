//! How lists (and maps) behave under server-side apply: atomic, set, or map keyed by
//! some fields. [`SchemaFromOpenApi`] reads `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` from a structural schema
//! and falls back to a caller-supplied table, then to atomic, as upstream does.

use serde_json::Value;

use super::fieldset::PathElement;

/// The merge behaviour of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole; owned as a single leaf.
    Atomic,
    /// A set of scalars; items merge by value.
    Set,
    /// A list of objects merged by the given key fields.
    Map(Vec<String>),
}

/// Type information for apply. `path` is the path of the list (or map) itself; list items
/// appear in it as `Key`/`Value`/`Index` elements.
pub trait Schema {
    fn list_type(&self, path: &[PathElement]) -> ListType;
    /// Whether a map is atomic (`x-kubernetes-map-type: atomic`): replaced and owned as a whole.
    fn is_atomic_map(&self, _path: &[PathElement]) -> bool {
        false
    }
    /// The value a key field of the list at `list` takes when an item omits it (upstream
    /// fills missing keys from schema defaults, e.g. a port's `protocol: TCP`).
    fn key_default(&self, _list: &[PathElement], _field: &str) -> Option<Value> {
        None
    }
}

/// Fallback list types for paths the schema says nothing about.
pub type Fallback = Box<dyn Fn(&[PathElement]) -> Option<ListType> + Send + Sync>;

/// A [`Schema`] over an OpenAPI v3 structural schema (such as a CRD's `openAPIV3Schema`).
pub struct SchemaFromOpenApi {
    root: Option<std::sync::Arc<Value>>,
    fallback: Option<Fallback>,
}

impl SchemaFromOpenApi {
    /// `root` is the schema of the whole object; `None` means no schema (every list atomic
    /// unless the fallback says otherwise).
    pub fn new(root: Option<Value>) -> SchemaFromOpenApi {
        SchemaFromOpenApi {
            root: root.map(std::sync::Arc::new),
            fallback: None,
        }
    }

    /// Like `new`, sharing a schema the caller already holds (no copy).
    pub fn shared(root: Option<std::sync::Arc<Value>>) -> SchemaFromOpenApi {
        SchemaFromOpenApi {
            root,
            fallback: None,
        }
    }

    /// Consulted when the schema gives no list type for a path.
    pub fn with_fallback(mut self, fallback: Fallback) -> SchemaFromOpenApi {
        self.fallback = Some(fallback);
        self
    }

    /// The schema node at `path`, following `properties`, `additionalProperties` and `items`.
    fn node(&self, path: &[PathElement]) -> Option<&Value> {
        let mut node: &Value = self.root.as_deref()?;
        for pe in path {
            node = match pe {
                PathElement::Field(name) => node
                    .pointer(&format!(
                        "/properties/{}",
                        name.replace('~', "~0").replace('/', "~1")
                    ))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
                _ => node.get("items")?,
            };
        }
        Some(node)
    }
}

impl Schema for SchemaFromOpenApi {
    fn list_type(&self, path: &[PathElement]) -> ListType {
        let node = self.node(path);
        let declared = node
            .and_then(|n| n.get("x-kubernetes-list-type"))
            .and_then(Value::as_str);
        match declared {
            Some("set") => return ListType::Set,
            Some("map") => {
                let keys = node
                    .and_then(|n| n.get("x-kubernetes-list-map-keys"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                return ListType::Map(keys);
            }
            Some(_) => return ListType::Atomic,
            None => {}
        }
        self.fallback
            .as_ref()
            .and_then(|f| f(path))
            .unwrap_or(ListType::Atomic)
    }

    fn is_atomic_map(&self, path: &[PathElement]) -> bool {
        self.node(path)
            .and_then(|n| n.get("x-kubernetes-map-type"))
            .and_then(Value::as_str)
            == Some("atomic")
    }

    /// The key field's schema `default`; for `protocol` of a `ports` list, `TCP`, as the
    /// built-in types default it.
    fn key_default(&self, list: &[PathElement], field: &str) -> Option<Value> {
        let declared = self
            .node(list)
            .and_then(|n| n.pointer(&format!("/items/properties/{field}/default")))
            .cloned();
        declared.or_else(|| {
            (field == "protocol" && list.last() == Some(&PathElement::Field("ports".into())))
                .then(|| Value::from("TCP"))
        })
    }
}

/// A convenience table of the merge keys of common built-in lists, matched by the last
/// field name of the path (and its parent where the name is ambiguous). Upstream takes
/// these from the built-in types' OpenAPI; this covers the frequent ones only.
pub fn builtin_list_type(path: &[PathElement]) -> Option<ListType> {
    let name = |i: usize| match path.len().checked_sub(i).and_then(|j| path.get(j)) {
        Some(PathElement::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    let keys = |ks: &[&str]| Some(ListType::Map(ks.iter().map(|k| k.to_string()).collect()));
    // The field holding the list item that holds this list, e.g. "containers" for a container's ports.
    let grandparent = name(3);
    match name(1)? {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => keys(&["name"]),
        "hostAliases" => keys(&["ip"]),
        "ports"
            if matches!(
                grandparent,
                Some("containers" | "initContainers" | "ephemeralContainers")
            ) =>
        {
            keys(&["containerPort", "protocol"])
        }
        "ports" if name(2) == Some("spec") => keys(&["port", "protocol"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "conditions" => keys(&["type"]),
        "ownerReferences" => keys(&["uid"]),
        "tolerations" | "args" | "command" => Some(ListType::Atomic),
        "finalizers" => Some(ListType::Set),
        _ => None,
    }
}
