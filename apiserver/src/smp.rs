//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds, with upstream's semantics.
//!
//! [`apply`] merges a patch into an object the way upstream's
//! `strategicpatch.StrategicMergePatch` does on the API server; where lists
//! merge and by which key comes from a [`PatchMeta`], which
//! [`patch_meta_for`] builds from a table of upstream's struct tags.

mod error;
mod merge;
mod meta;
mod order;
mod table;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use error::{SmpError, SmpErrorKind};
pub use meta::{FieldMeta, PatchMeta, Strategy};
pub use table::patch_meta_for;

/// Applies the strategic merge patch `patch` to `original`, returning the
/// patched object. Both must be JSON objects. Directives (`$patch`,
/// `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`) are
/// consumed and never appear in the result.
pub fn apply(original: &Value, patch: &Value, schema: &PatchMeta) -> Result<Value, SmpError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(SmpError::bad_json_doc());
    };
    merge::Merger { meta: schema }
        .merge_map(original.clone(), patch, "")
        .map(Value::Object)
}
