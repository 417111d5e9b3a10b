//! Patches of a stored object: JSON merge patch, strategic merge patch (built-in kinds)
//! and JSON patch within upstream's limits.

use bytes::Bytes;
use serde_json::Value;

use crate::json;
use crate::status::{ApiError, Result};

/// Upstream's limits on a JSON patch: how many operations it may have, and how many
/// bytes its `copy` operations may add up to (copies are how a 2 KB patch could build a
/// 67 MB object). Both as kube-apiserver's defaults (`maxJSONPatchOperations`,
/// `JSONPatchMaxCopyBytes`).
const MAX_PATCH_OPERATIONS: usize = 10_000;
const MAX_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies a merge, strategic merge (built-in kinds only, with their patch metadata;
/// `None` refuses it as upstream does for custom resources) or JSON patch.
pub(super) fn apply_patch(
    current: &Value,
    media: &str,
    body: &Bytes,
    smp_meta: Option<&crate::smp::PatchMeta>,
) -> Result<Value> {
    let mut target = current.clone();
    let parse_object = || -> Result<Value> {
        let patch: Value = json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
        if !patch.is_object() {
            return Err(ApiError::BadRequest(
                "a merge patch must be a JSON object".into(),
            ));
        }
        Ok(patch)
    };
    match media {
        "application/merge-patch+json" => json_patch::merge(&mut target, &parse_object()?),
        "application/strategic-merge-patch+json" => {
            let meta = smp_meta.ok_or(ApiError::UnsupportedPatch)?;
            // Upstream answers the errors it has no class for (a list element without its
            // merge key, mixed element types) with a bare 500; every one of them is about
            // the patch the client sent, so they are 400s here.
            target =
                crate::smp::apply(current, &parse_object()?, meta).map_err(|e| match e.kind() {
                    crate::smp::SmpErrorKind::Unprocessable => {
                        ApiError::Unprocessable(e.to_string())
                    }
                    crate::smp::SmpErrorKind::BadRequest | crate::smp::SmpErrorKind::Other => {
                        ApiError::BadRequest(e.to_string())
                    }
                })?;
        }
        "application/json-patch+json" => apply_json_patch(&mut target, body)?,
        _ => return Err(ApiError::UnsupportedPatch),
    }
    if !target.is_object() {
        return Err(ApiError::Unprocessable(
            "the patched object is not a JSON object".into(),
        ));
    }
    Ok(target)
}

/// Applies a JSON patch (RFC 6902) within upstream's limits, one operation at a time on
/// the caller's copy: a failed patch leaves that copy half-done and the caller drops it,
/// so nothing is ever undone in place (the json-patch crate's own undo panics on some
/// `move` sequences). Each operation is checked before it runs, so no step can build a
/// value deeper than [`json::MAX_DEPTH`] or copy more than [`MAX_PATCH_COPY_BYTES`].
fn apply_json_patch(target: &mut Value, body: &[u8]) -> Result<()> {
    use json_patch::PatchOperation as Op;
    let ops: json_patch::Patch = json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the JSON patch is not valid: {e}")))?;
    if ops.0.len() > MAX_PATCH_OPERATIONS {
        return Err(ApiError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    // The depth of a value once placed at `path` (one level per path segment).
    let placed = |path: &str, value: &Value| path.matches('/').count() + json::depth(value);
    let too_deep = |i: usize| {
        ApiError::Unprocessable(format!(
            "JSON patch operation {i} would nest the object too deeply: {}",
            json::Error::TooDeep(json::MAX_DEPTH)
        ))
    };
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        let depth = match op {
            Op::Add(o) => placed(o.path.as_str(), &o.value),
            Op::Replace(o) => placed(o.path.as_str(), &o.value),
            Op::Move(o) => target
                .pointer(o.from.as_str())
                .map_or(0, |v| placed(o.path.as_str(), v)),
            Op::Copy(o) => match target.pointer(o.from.as_str()) {
                Some(v) => {
                    copied += json::encoded_len(v);
                    if copied > MAX_PATCH_COPY_BYTES {
                        return Err(ApiError::Unprocessable(format!(
                            "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_PATCH_COPY_BYTES}"
                        )));
                    }
                    placed(o.path.as_str(), v)
                }
                None => 0,
            },
            Op::Remove(_) | Op::Test(_) => 0,
        };
        if depth > json::MAX_DEPTH {
            return Err(too_deep(i));
        }
        json_patch::patch_unsafe(target, std::slice::from_ref(op)).map_err(|e| {
            ApiError::Unprocessable(format!(
                "JSON patch operation {i} failed at path {:?}: {}",
                e.path.as_str(),
                e.kind
            ))
        })?;
    }
    Ok(())
}

/// The `metadata.resourceVersion` a patch body itself sets, if any.
pub(super) fn patch_resource_version(media: &str, body: &Bytes) -> Option<String> {
    let parsed: Value = json::from_slice(body).ok()?;
    let rv = if media == "application/json-patch+json" {
        parsed
            .as_array()?
            .iter()
            .rev()
            .find(|op| {
                op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                    && matches!(
                        op.get("op").and_then(Value::as_str),
                        Some("add" | "replace" | "test")
                    )
            })?
            .get("value")?
            .as_str()?
            .to_string()
    } else {
        parsed
            .pointer("/metadata/resourceVersion")?
            .as_str()?
            .to_string()
    };
    Some(rv)
}
