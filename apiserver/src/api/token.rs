//! `serviceaccounts/token` (authentication.k8s.io/v1 TokenRequest): issues a bound
//! service-account JWT, signed ES256 with the cluster's service-account key, with
//! upstream's claims (iss, sub, aud, exp, iat, nbf, jti and the `kubernetes.io` object
//! binding). The key is made on first start next to the CA (`pki/service-account.key`,
//! its public half in `pki/service-account.pub` for verifiers).

mod proto;

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Response, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::negotiate::decode_object;
use super::read::get_object;
use super::{json_response, Api, ApiRequest, Body};
use crate::object;
use crate::status::{ApiError, Cause, Result, Target};

/// The issuer (and default audience) of our tokens, k3s's default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Upstream's default token lifetime (TokenRequestSpec defaulting).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream refuses shorter tokens (authentication validation MinTokenAgeSec).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// ... and longer than 2^32 seconds.
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const KEY_FILE: &str = "service-account.key";
const PUBLIC_KEY_FILE: &str = "service-account.pub";

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("service-account key {path}: {reason}")]
    Key { path: String, reason: String },
}

/// The key tokens are signed with, and how verifiers name it (`kid`).
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    /// The public key as PEM (SubjectPublicKeyInfo), what verifiers load.
    pub public_key_pem: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads `dir/pki/service-account.key`, making a P-256 key (0600) the first time,
    /// and (re)writes its public half next to it.
    pub fn ensure(dir: &Path) -> std::result::Result<Self, SignerError> {
        let pki = dir.join("pki");
        let key_path = pki.join(KEY_FILE);
        let shown = key_path.display().to_string();
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SignerError::Io { path, source }
        };
        let bad = |reason: String| SignerError::Key {
            path: shown.clone(),
            reason,
        };
        std::fs::create_dir_all(&pki).map_err(io(&pki))?;
        let pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| bad(e.to_string()))?;
                let pem = pair.serialize_pem();
                write_private(&key_path, pem.as_bytes()).map_err(io(&key_path))?;
                pem
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        let signer = Self::from_pkcs8(
            &pair.serialize_der(),
            &rcgen::PublicKeyData::subject_public_key_info(&pair),
            ISSUER,
        )
        .map_err(bad)?;
        let pub_path = pki.join(PUBLIC_KEY_FILE);
        std::fs::write(&pub_path, &signer.public_key_pem).map_err(io(&pub_path))?;
        Ok(signer)
    }

    fn from_pkcs8(
        pkcs8: &[u8],
        spki_der: &[u8],
        issuer: &str,
    ) -> std::result::Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
        // Upstream's key id: the unpadded base64url SHA-256 of the DER public key.
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, spki_der));
        let public_key_pem = pem("PUBLIC KEY", spki_der);
        Ok(TokenSigner {
            key,
            kid,
            issuer: issuer.into(),
            public_key_pem,
        })
    }

    /// The public key point (uncompressed SEC1), for verifying with ring.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// A compact JWS: `header.claims.signature`, ES256 (r‖s, 64 bytes).
    pub fn sign(&self, claims: &Value) -> std::result::Result<String, ApiError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
        let input = format!("{}.{}", part(&header), part(claims));
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| ApiError::Internal("failed to generate token: signing failed".into()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// What a TokenRequest asks for, defaulted as upstream defaults it.
#[derive(Debug, PartialEq)]
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundRef>,
}

#[derive(Debug, PartialEq)]
pub struct BoundRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// The request's spec with defaults (audiences: the issuer; lifetime: an hour), or
/// upstream's validation errors.
pub fn token_spec(body: &Value) -> Result<TokenSpec> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(String::from)
        .collect();
    if audiences.is_empty() {
        audiences.push(ISSUER.into());
    }
    let expiration_seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    let invalid = |detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: "spec.expirationSeconds".into(),
        message: format!("Invalid value: {expiration_seconds}: {detail}"),
    };
    let mut causes = Vec::new();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        causes.push(invalid("may not specify a duration less than 10 minutes"));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        causes.push(invalid(
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        let target = Target::new("authentication.k8s.io", "tokenrequests", "");
        return Err(ApiError::Invalid {
            target,
            kind: "TokenRequest.authentication.k8s.io".into(),
            causes,
        });
    }
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let bound = spec
        .get("boundObjectRef")
        .filter(|r| r.is_object())
        .map(|r| BoundRef {
            api_version: text(r, "apiVersion"),
            kind: text(r, "kind"),
            name: text(r, "name"),
            uid: text(r, "uid"),
        });
    Ok(TokenSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// The JWT claims upstream's service-account token generator writes.
pub fn claims(
    ns: &str,
    sa: &Value,
    bound: Option<(&str, &Value)>,
    spec: &TokenSpec,
    issuer: &str,
    now: i64,
) -> Value {
    let sa_name = object::name(sa);
    let reference = |o: &Value| json!({"name": object::name(o), "uid": object::meta_str(o, "uid").unwrap_or_default()});
    let mut k8s = json!({"namespace": ns, "serviceaccount": reference(sa)});
    if let Some((field, obj)) = bound {
        k8s[field] = reference(obj);
    }
    json!({
        "iss": issuer,
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
        "aud": spec.audiences,
        "exp": now + spec.expiration_seconds,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": k8s,
    })
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub async fn create(api: &Arc<Api>, req: &ApiRequest, name: &str) -> Result<Response<Body>> {
    let ns = req.namespace().unwrap_or_default().to_string();
    let body = if crate::protobuf::is_protobuf(&req.content_type) {
        proto::decode(&req.body).map_err(ApiError::BadRequest)?
    } else {
        decode_object(&req.content_type, &req.body)?
    };
    if object::namespace(&body).is_some_and(|n| !n.is_empty() && n != ns) {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let spec = token_spec(&body)?;
    let snapshot = api.registry.snapshot();
    let resource = |plural: &str| {
        snapshot
            .get("", "v1", plural)
            .cloned()
            .ok_or(ApiError::NoSuchResource)
    };
    let sa = get_object(api, &*resource("serviceaccounts")?, Some(&ns), name, false).await?;
    let bound = match &spec.bound {
        None => None,
        Some(r) => {
            let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let (plural, field) = match (group, r.kind.as_str()) {
                ("", "Pod") => ("pods", "pod"),
                ("", "Secret") => ("secrets", "secret"),
                ("", "Node") => ("nodes", "node"),
                _ => {
                    let version = r.api_version.rsplit('/').next().unwrap_or_default();
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token to object of type {group}/{version}, Kind={}",
                        r.kind
                    )));
                }
            };
            let in_ns = (field != "node").then_some(ns.as_str());
            let obj = get_object(api, &*resource(plural)?, in_ns, &r.name, false).await?;
            if field == "pod" {
                let account = obj
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                if account.unwrap_or("default") != name {
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
            }
            let uid = object::meta_str(&obj, "uid").unwrap_or_default();
            if !r.uid.is_empty() && r.uid != uid {
                return Err(ApiError::Conflict(
                    Target::new(group, &r.kind, &r.name),
                    format!("the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated", r.uid),
                ));
            }
            Some((field, obj))
        }
    };
    let signer = api.token_signer.get().ok_or_else(|| {
        ApiError::ServiceUnavailable("the service-account token signing key is not loaded".into())
    })?;
    let now = object::unix_now();
    let claims = claims(
        &ns,
        &sa,
        bound.as_ref().map(|(f, o)| (*f, o)),
        &spec,
        &signer.issuer,
        now,
    );
    let token = signer.sign(&claims)?;
    let mut out_spec = json!({"audiences": spec.audiences, "expirationSeconds": spec.expiration_seconds, "boundObjectRef": null});
    if let Some(r) = body
        .pointer("/spec/boundObjectRef")
        .filter(|r| r.is_object())
    {
        out_spec["boundObjectRef"] = r.clone();
    }
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": object::rfc3339(now + spec.expiration_seconds)},
    });
    Ok(json_response(StatusCode::CREATED, &response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn signer() -> TokenSigner {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenSigner::from_pkcs8(
            &pair.serialize_der(),
            &rcgen::PublicKeyData::subject_public_key_info(&pair),
            ISSUER,
        )
        .unwrap()
    }

    #[test]
    fn token_requests_are_defaulted_and_validated_as_upstream() {
        let cases = [
            ("empty spec", json!({}), Ok((vec![ISSUER], 3600))),
            (
                "own audiences",
                json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600}}),
                Ok((vec!["vault"], 600)),
            ),
            (
                "too short",
                json!({"spec": {"expirationSeconds": 599}}),
                Err("Invalid value: 599: may not specify a duration less than 10 minutes"),
            ),
            (
                "too long",
                json!({"spec": {"expirationSeconds": 1i64 << 33}}),
                Err("may not specify a duration larger than 2^32 seconds"),
            ),
        ];
        for (name, body, want) in cases {
            match (token_spec(&body), want) {
                (Ok(spec), Ok((auds, exp))) => {
                    assert_eq!(spec.audiences, auds, "{name}");
                    assert_eq!(spec.expiration_seconds, exp, "{name}");
                }
                (Err(e), Err(msg)) => {
                    assert_eq!(e.code(), 422, "{name}");
                    assert!(e.to_string().starts_with("TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds"), "{name}: {e}");
                    assert!(e.to_string().contains(msg), "{name}: {e}");
                }
                (got, _) => panic!("{name}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn claims_name_the_account_and_the_bound_pod() {
        let sa = json!({"metadata": {"name": "robot", "uid": "sa-uid"}});
        let pod = json!({"metadata": {"name": "web-0", "uid": "pod-uid"}});
        let spec =
            token_spec(&json!({"spec": {"audiences": ["a", "b"], "expirationSeconds": 700}}))
                .unwrap();
        let c = claims("prod", &sa, Some(("pod", &pod)), &spec, ISSUER, 1000);
        assert_eq!(c["iss"], ISSUER);
        assert_eq!(c["sub"], "system:serviceaccount:prod:robot");
        assert_eq!(c["aud"], json!(["a", "b"]));
        assert_eq!(
            (c["iat"].as_i64(), c["nbf"].as_i64(), c["exp"].as_i64()),
            (Some(1000), Some(1000), Some(1700))
        );
        assert_eq!(
            c["kubernetes.io"],
            json!({"namespace": "prod", "serviceaccount": {"name": "robot", "uid": "sa-uid"}, "pod": {"name": "web-0", "uid": "pod-uid"}})
        );
        assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    }

    #[test]
    fn signed_tokens_verify_with_the_public_key_and_fail_when_altered() {
        let s = signer();
        let token = s.sign(&json!({"sub": "x"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": s.kid}));
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, s.public_key());
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(key
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .is_ok());
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        assert!(key
            .verify(format!("{}.{forged}", parts[0]).as_bytes(), &sig)
            .is_err());
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenSigner::ensure(dir.path()).unwrap();
        let second = TokenSigner::ensure(dir.path()).unwrap();
        assert_eq!(first.kid, second.kid);
        assert_eq!(first.public_key(), second.public_key());
        let key = dir.path().join("pki").join(KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let public = std::fs::read_to_string(dir.path().join("pki").join(PUBLIC_KEY_FILE)).unwrap();
        assert!(
            public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{public}"
        );
    }
}
