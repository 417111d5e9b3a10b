//! `certificatesigningrequests/approval` (certificates.k8s.io/v1): an update or patch of
//! a CertificateSigningRequest that changes only `status.conditions` (Approved,
//! Denied), as upstream's approval strategy; `/status` is the ordinary status
//! subresource, and a GET of `/approval` reads the object.

use std::sync::Arc;

use http::{Method, Response};
use serde_json::{json, Value};

use super::negotiate::{decode_object, media_type};
use super::patch::apply_patch;
use super::read::object_response;
use super::write::{read_modify_write, Change, Derive};
use super::{Api, ApiRequest, Body};
use crate::object;
use crate::registry::Resource;
use crate::status::Result;

/// Whether `r` is certificates.k8s.io's CertificateSigningRequests.
pub(super) fn is_csr(r: &Resource) -> bool {
    r.group == "certificates.k8s.io" && r.plural == "certificatesigningrequests"
}

/// PUT or PATCH of `/approval`.
pub(super) async fn update(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    let derive = Derive {
        derive: Box::new(|current: &Value| approved(r, req, current)),
        tracks_fields: false,
    };
    // Written as a status update: the spec and metadata of the request are ignored.
    let mut as_status = req.clone();
    as_status.path.subresource = Some("status".into());
    let (code, out) = read_modify_write(api, r, &as_status, name, Change::Derive(&derive)).await?;
    object_response(api, r, req, code, &out)
}

/// The stored object with the request's `status.conditions` (a PUT body, or the
/// patched object), and the resourceVersion the client made it conditional on.
fn approved(r: &Resource, req: &ApiRequest, current: &Value) -> Result<(Value, Option<String>)> {
    let wanted = if req.method == Method::PUT {
        decode_object(&req.content_type, &req.body)?
    } else {
        let mut base = current.clone();
        base["apiVersion"] = json!(r.api_version());
        let meta = crate::smp::patch_meta_for(&r.group, &r.kind);
        apply_patch(
            &base,
            &media_type(&req.content_type),
            &req.body,
            Some(&meta),
        )?
    };
    let mut next = current.clone();
    match wanted.pointer("/status/conditions") {
        Some(c) if !c.is_null() => {
            if !next.get("status").is_some_and(Value::is_object) {
                next["status"] = json!({});
            }
            next["status"]["conditions"] = c.clone();
        }
        _ => {
            if let Some(s) = next.get_mut("status").and_then(Value::as_object_mut) {
                s.remove("conditions");
            }
        }
    }
    let precondition = if req.method == Method::PUT {
        object::meta_str(&wanted, "resourceVersion").map(str::to_string)
    } else {
        None
    };
    Ok((next, precondition))
}
