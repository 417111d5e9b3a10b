//! managedFields glue between the handlers and `crate::apply`: which manager a request
//! writes as, the list types of a resource, and turning apply errors into Statuses.

use serde_json::{json, Value};

use super::ApiRequest;
use crate::apply::{self, ApplyError, SchemaFromOpenApi};
use crate::object;
use crate::registry::Resource;
use crate::status::{ApiError, Cause, Result};

/// The list types of a resource: its schema's markers, and for built-in kinds the
/// merge keys upstream's types declare.
fn schema_for(r: &Resource) -> SchemaFromOpenApi {
    let schema = SchemaFromOpenApi::shared(r.schema());
    if r.builtin {
        schema.with_fallback(Box::new(apply::builtin_list_type))
    } else {
        schema
    }
}

fn subresource(req: &ApiRequest) -> Option<&str> {
    req.path.subresource.as_deref()
}

/// `fieldManager`, or upstream's default derived from the User-Agent.
pub(super) fn manager(req: &ApiRequest) -> String {
    match req.query.value("fieldManager") {
        Some(m) => m.to_string(),
        None => apply::default_manager(&req.user_agent),
    }
}

/// Records the fields a create or update changed under its manager's Update entry.
pub(super) fn track(r: &Resource, req: &ApiRequest, old: Option<&Value>, new: Value) -> Value {
    let empty = json!({});
    let mut new = apply::track_update(
        old.unwrap_or(&empty),
        &new,
        &manager(req),
        subresource(req),
        &schema_for(r),
        &object::now_rfc3339(),
    );
    // The stored form never carries a resourceVersion inside managedFields entries.
    if new
        .pointer("/metadata/managedFields")
        .is_some_and(|m| m.as_array().is_some_and(Vec::is_empty))
    {
        object::metadata_mut(&mut new).remove("managedFields");
    }
    new
}

/// Merges an applied configuration into the live object.
pub(super) fn apply(
    r: &Resource,
    req: &ApiRequest,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value> {
    apply::apply_to(
        live,
        applied,
        manager,
        subresource(req),
        force,
        &schema_for(r),
        &object::now_rfc3339(),
    )
    .map_err(|e| match e {
        ApplyError::Conflict(conflicts) => ApiError::ApplyConflict {
            message: ApplyError::Conflict(conflicts.clone()).to_string(),
            causes: conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict",
                    field: c.field.clone(),
                    message: c.cause_message(),
                })
                .collect(),
        },
        ApplyError::BadRequest(m) => ApiError::BadRequest(m),
    })
}
