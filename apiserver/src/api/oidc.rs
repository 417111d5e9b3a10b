//! The service-account issuer's discovery documents, as upstream serves them so that
//! other parties can verify our tokens: `/.well-known/openid-configuration` and the key
//! set at `/openid/v1/jwks` (the ES256 key, `kid` as in the tokens' header).

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::{bytes_response, Api, Body};
use crate::status::{ApiError, Result};

pub(super) const CONFIGURATION: &str = "/.well-known/openid-configuration";
pub(super) const JWKS: &str = "/openid/v1/jwks";
/// Upstream lets caches keep both documents for an hour.
const CACHE_CONTROL: &str = "public, max-age=3600";

pub(super) fn handles(path: &str) -> bool {
    path == CONFIGURATION || path == JWKS
}

pub(super) fn serve(api: &Api, method: &Method, path: &str) -> Result<Response<Body>> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let signer = api.token_signer.get().ok_or(ApiError::NoSuchResource)?;
    let (content_type, doc) = if path == CONFIGURATION {
        // The key set's URL is where clients reach this server (upstream's external address).
        let host = api
            .advertise
            .get()
            .map(|a| a.to_string())
            .unwrap_or_else(|| api.server_address.clone());
        let doc = json!({
            "issuer": signer.issuer(),
            "jwks_uri": format!("https://{host}{JWKS}"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        ("application/json", doc)
    } else {
        ("application/jwk-set+json", json!({"keys": [signer.jwk()]}))
    };
    let mut resp = bytes_response(
        StatusCode::OK,
        content_type,
        Bytes::from(crate::json::to_vec(&doc)),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static(CACHE_CONTROL),
    );
    Ok(resp)
}
