//! Authenticators besides the client certificate: service-account bearer tokens
//! (upstream's service-account JWT authenticator) and the anonymous user (upstream's
//! anonymous authenticator, last in the list, so it only answers requests that carry no
//! credentials at all). TokenReview asks the same [`service_account_user`] the
//! authenticator does, so both accept exactly the same tokens.

mod bootstrap;
pub mod bootstrap_token;
mod impersonation;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use super::{Authenticated, Authenticator, Credentials, UserInfo};
use crate::api::{Api, ServiceAccountUser};
use crate::object;

pub use bootstrap::BootstrapTokens;
pub use impersonation::impersonate;

pub(super) const ANONYMOUS_USER: &str = "system:anonymous";
pub(super) const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// A bound object marked for deletion longer ago than this no longer vouches for its
/// tokens (upstream's grace in the service-account token validator).
const DELETED_GRACE_SECONDS: i64 = 60;

/// `Authorization: Bearer <jwt>` with a service-account token of this server.
pub struct ServiceAccountTokens;

#[async_trait]
impl Authenticator for ServiceAccountTokens {
    async fn authenticate(&self, api: &Api, credentials: &Credentials<'_>) -> Authenticated {
        let Some(token) = bearer_token(credentials.headers) else {
            return Authenticated::NoCredentials;
        };
        let audiences = api_audiences(api);
        let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
        match service_account_user(api, token, &audiences).await {
            Ok((user, _)) => Authenticated::User(user),
            Err(why) => Authenticated::Invalid(format!("invalid bearer token, {why}")),
        }
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive, as upstream's
/// bearer-token request authenticator reads it); none for other schemes or an empty token.
pub(crate) fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The audiences tokens presented to this server must name (upstream's
/// `--api-audiences`, which defaults to the issuer).
pub(crate) fn api_audiences(api: &Api) -> Vec<String> {
    api.token_signer
        .get()
        .map(|s| vec![s.issuer().to_string()])
        .unwrap_or_default()
}

/// The user a service-account token names, if the token is ours (signature, issuer, one
/// of `audiences`, within its lifetime) and what it is bound to (service account, pod,
/// secret) still exists with the uid in the token; also the audiences of `audiences`
/// the token names. The error says why not, as upstream's validator words it.
pub(crate) async fn service_account_user(
    api: &Api,
    token: &str,
    audiences: &[&str],
) -> Result<(UserInfo, Vec<String>), String> {
    let signer = api
        .token_signer
        .get()
        .ok_or("service account tokens are not enabled on this server")?;
    let sa = signer
        .verify(token, audiences, object::unix_now())
        .map_err(|e| e.to_string())?;
    check_bound(api, &sa, token).await?;
    let matched = audiences
        .iter()
        .filter(|a| sa.audiences.iter().any(|t| t == *a))
        .map(|a| a.to_string())
        .collect();
    Ok((user_of(&sa), matched))
}

/// The service account, pod and secret a token names must still exist with the same uid
/// (and not be deleted for longer than [`DELETED_GRACE_SECONDS`]); a node only when the
/// token is bound to the node itself.
async fn check_bound(api: &Api, sa: &ServiceAccountUser, token: &str) -> Result<(), String> {
    let account = serde_json::json!({"name": sa.service_account, "uid": sa.uid});
    let mut refs = vec![("serviceaccounts", "service account", &account, true)];
    for (claim, plural, what) in [("pod", "pods", "pod"), ("secret", "secrets", "secret")] {
        if let Some(r) = sa.bound.get(claim) {
            refs.push((plural, what, r, true));
        }
    }
    let pod_bound = sa.bound.contains_key("pod");
    if let Some(node) = sa.bound.get("node").filter(|_| !pod_bound) {
        refs.push(("nodes", "node", node, false));
    }
    for (plural, what, r, namespaced) in refs {
        let name = r["name"].as_str().unwrap_or_default();
        let ns = namespaced.then_some(sa.namespace.as_str());
        let obj = cached(api, plural, ns, name).await.ok_or_else(|| {
            tracing::debug!(%what, %name, "the object a token is bound to is gone");
            "service account token has been invalidated".to_string()
        })?;
        let uid = object::meta_str(&obj, "uid").unwrap_or_default();
        let want = r["uid"].as_str().unwrap_or_default();
        if !want.is_empty() && uid != want {
            return Err(format!("{what} UID ({uid}) does not match claim ({want})"));
        }
        let deleted = object::meta_str(&obj, "deletionTimestamp")
            .and_then(object::parse_rfc3339)
            .is_some_and(|t| t < object::unix_now() - DELETED_GRACE_SECONDS);
        if deleted {
            return Err("service account token has been invalidated".into());
        }
        // A legacy token is valid only while its Secret still holds it.
        if sa.legacy && plural == "secrets" && !holds_token(&obj, token) {
            return Err("token does not match server's copy".into());
        }
    }
    Ok(())
}

/// Whether a Secret's `data.token` is `token`.
fn holds_token(secret: &Value, token: &str) -> bool {
    use base64::Engine as _;
    secret
        .pointer("/data/token")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .is_some_and(|d| d == token.trim().as_bytes())
}

/// One object from the watch cache (cheap; no storage read).
async fn cached(api: &Api, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let snapshot = api.registry.snapshot();
    let r = snapshot.get("", "v1", plural)?;
    let cache = api.cache(r).await.ok()?;
    cache.get(&r.key(ns, name)).map(|o| (*o).clone())
}

/// Upstream's `ServiceAccountInfo.UserInfo()`: the account's name, uid and groups, the
/// pod, node and token id as extra.
fn user_of(sa: &ServiceAccountUser) -> UserInfo {
    let mut extra = BTreeMap::new();
    for claim in ["pod", "node"] {
        if let Some(b) = sa.bound.get(claim) {
            for field in ["name", "uid"] {
                if let Some(v) = b[field].as_str() {
                    extra.insert(
                        format!("authentication.kubernetes.io/{claim}-{field}"),
                        vec![v.to_string()],
                    );
                }
            }
        }
    }
    if let Some(jti) = &sa.id {
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={jti}")],
        );
    }
    let mut groups = sa.groups.clone();
    groups.push("system:authenticated".into());
    UserInfo {
        name: sa.name.clone(),
        uid: sa.uid.clone(),
        groups,
        extra,
    }
}

/// The last authenticator: a request without credentials is `system:anonymous` in
/// `system:unauthenticated` (credentials that were offered and refused stay a 401).
pub struct Anonymous;

#[async_trait]
impl Authenticator for Anonymous {
    async fn authenticate(&self, _: &Api, _: &Credentials<'_>) -> Authenticated {
        Authenticated::User(anonymous())
    }
}

pub fn anonymous() -> UserInfo {
    UserInfo {
        name: ANONYMOUS_USER.into(),
        groups: vec![UNAUTHENTICATED_GROUP.into()],
        ..Default::default()
    }
}
