//! Patch metadata: per-field list strategies and merge keys, keyed by JSON field path.

use std::collections::BTreeMap;

/// How a field is combined with the live value, mirroring upstream's
/// `patchStrategy` struct tag (without the `retainKeys` part, which is a
/// separate flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// No tag: maps merge key by key, lists are replaced as a whole.
    #[default]
    Default,
    /// `patchStrategy:"merge"`: lists of maps merge by the merge key, lists
    /// of primitives are unioned.
    Merge,
    /// `patchStrategy:"replace"`: the patch value replaces the field, even a map.
    Replace,
}

/// The patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldMeta {
    pub strategy: Strategy,
    /// `patchMergeKey`: the element key of a merging list of maps.
    pub merge_key: Option<&'static str>,
    /// The field also carries the `retainKeys` strategy. Applying a patch
    /// honours `$retainKeys` wherever it appears (as upstream does); the flag
    /// records the tag for completeness.
    pub retain_keys: bool,
}

impl FieldMeta {
    /// A merging list of maps keyed by `key`.
    pub const fn merge_by(key: &'static str) -> Self {
        Self {
            strategy: Strategy::Merge,
            merge_key: Some(key),
            retain_keys: false,
        }
    }

    /// A merging list of primitives (a set that keeps order).
    pub const fn merge_primitives() -> Self {
        Self {
            strategy: Strategy::Merge,
            merge_key: None,
            retain_keys: false,
        }
    }

    /// A field replaced as a whole.
    pub const fn replace() -> Self {
        Self {
            strategy: Strategy::Replace,
            merge_key: None,
            retain_keys: false,
        }
    }

    /// A field with only the `retainKeys` strategy.
    pub const fn retain_keys() -> Self {
        Self {
            strategy: Strategy::Default,
            merge_key: None,
            retain_keys: true,
        }
    }

    /// Adds the `retainKeys` strategy to this field.
    pub const fn and_retain_keys(mut self) -> Self {
        self.retain_keys = true;
        self
    }
}

/// Patch metadata for one kind: field paths (dot-joined JSON field names
/// from the object root; list elements add no segment, so the containers'
/// env of a Deployment is `spec.template.spec.containers.env`) mapped to
/// their [`FieldMeta`]. Fields not listed have [`Strategy::Default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchMeta {
    fields: BTreeMap<String, FieldMeta>,
}

impl PatchMeta {
    /// Metadata with no tagged fields: maps merge, lists replace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the metadata of the field at `path`.
    pub fn insert(&mut self, path: impl Into<String>, meta: FieldMeta) {
        self.fields.insert(path.into(), meta);
    }

    /// Builder form of [`PatchMeta::insert`].
    pub fn with(mut self, path: impl Into<String>, meta: FieldMeta) -> Self {
        self.insert(path, meta);
        self
    }

    /// The metadata of the field at `path`, or the default.
    pub fn get(&self, path: &str) -> FieldMeta {
        self.fields.get(path).copied().unwrap_or_default()
    }

    /// All tagged fields, in path order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &FieldMeta)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }
}
