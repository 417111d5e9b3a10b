//! The service-account signing key: made once next to the CA, ES256 (P-256) compact
//! JWS signing, and verification of our own tokens for a bearer-token authenticator
//! (signature, issuer, audience, validity window, subject), as upstream's
//! service-account JWT validator checks them.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};

use super::ISSUER;
use crate::status::ApiError;

/// Clock skew tolerated on `exp` and `nbf` (go-jose's default leeway, which upstream uses).
pub(super) const LEEWAY_SECONDS: i64 = 60;

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

    /// The `iss` of our tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key as upstream's JWKS lists it (`/openid/v1/jwks`).
    pub fn jwk(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let point = self.public_key();
        let (x, y) = point[1..].split_at(32);
        json!({
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
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

/// Who a valid token says its bearer is.
#[derive(Debug, PartialEq)]
pub struct ServiceAccountUser {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub name: String,
    /// `system:serviceaccounts` and `system:serviceaccounts:<namespace>`.
    pub groups: Vec<String>,
    pub namespace: String,
    pub service_account: String,
    pub uid: String,
    /// What the token is bound to (`pod`, `secret`, `node`: `{name, uid}`). Upstream's
    /// authenticator also refuses a token whose bound object is gone or has another uid;
    /// that takes API reads, so it is the caller's part.
    pub bound: Map<String, Value>,
    /// Every audience the token names.
    pub audiences: Vec<String>,
    /// The token's `jti` (upstream's credential id), if it has one.
    pub id: Option<String>,
    /// A legacy token from a `kubernetes.io/service-account-token` Secret.
    pub legacy: bool,
}

/// Why a bearer token was not accepted.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("invalid signature")]
    Signature,
    #[error("token issued by {0:?}, not by this server")]
    Issuer(String),
    #[error("token audiences {0:?} are invalid for this server")]
    Audience(Vec<String>),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token does not name a service account")]
    Subject,
}

impl TokenSigner {
    /// Checks a token of ours: ES256 signature with this key, our issuer, an audience in
    /// `audiences`, `now` within nbf..exp (with [`LEEWAY_SECONDS`]), and a subject that
    /// agrees with its `kubernetes.io` claims. A legacy token (issuer
    /// [`LEGACY_ISSUER`], no audience, no expiry) needs only the signature and its claims.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[&str],
        now: i64,
    ) -> std::result::Result<ServiceAccountUser, TokenError> {
        let claims = self.signed_claims(token)?;
        if claims["iss"] == LEGACY_ISSUER {
            return legacy_user(&claims);
        }
        let iss = claims["iss"].as_str().unwrap_or_default();
        if iss != self.issuer {
            return Err(TokenError::Issuer(iss.into()));
        }
        let auds: Vec<String> = match &claims["aud"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => vec![],
        };
        if !auds.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(TokenError::Audience(auds));
        }
        let exp = claims["exp"].as_i64().ok_or(TokenError::Malformed)?;
        if now > exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if claims["nbf"]
            .as_i64()
            .is_some_and(|nbf| now + LEEWAY_SECONDS < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        let k8s = claims["kubernetes.io"]
            .as_object()
            .ok_or(TokenError::Subject)?;
        let namespace = k8s
            .get("namespace")
            .and_then(Value::as_str)
            .ok_or(TokenError::Subject)?;
        let account = k8s.get("serviceaccount").ok_or(TokenError::Subject)?;
        let service_account = account["name"].as_str().ok_or(TokenError::Subject)?;
        let name = format!("system:serviceaccount:{namespace}:{service_account}");
        if claims["sub"].as_str() != Some(name.as_str()) {
            return Err(TokenError::Subject);
        }
        let bound = k8s
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "pod" | "secret" | "node"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ServiceAccountUser {
            name,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ],
            namespace: namespace.into(),
            service_account: service_account.into(),
            uid: account["uid"].as_str().unwrap_or_default().into(),
            bound,
            audiences: auds,
            id: claims["jti"].as_str().map(String::from),
            legacy: false,
        })
    }
}

impl TokenSigner {
    /// The claims of a compact JWS signed (ES256) with this key.
    fn signed_claims(&self, token: &str) -> std::result::Result<Value, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "ES256" {
            return Err(TokenError::Signature);
        }
        let signed = &token.trim()[..header_len(token.trim())];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.public_key())
            .verify(signed.as_bytes(), &decode(sig)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Value =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        Ok(claims)
    }

    /// Upstream's legacy (Secret-stored, non-expiring) token for `account` and `secret` in
    /// `namespace`.
    pub fn sign_legacy(
        &self,
        namespace: &str,
        account: &str,
        account_uid: &str,
        secret: &str,
    ) -> std::result::Result<String, ApiError> {
        self.sign(&json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": account,
            "kubernetes.io/serviceaccount/service-account.uid": account_uid,
            "sub": format!("system:serviceaccount:{namespace}:{account}"),
        }))
    }
}

/// The issuer of legacy tokens (kept in Secrets, never expiring).
pub(super) const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Who a legacy token names; its Secret (`bound["secret"]`) must still hold it, which
/// the caller checks.
fn legacy_user(claims: &Value) -> std::result::Result<ServiceAccountUser, TokenError> {
    let claim = |k: &str| {
        claims[format!("kubernetes.io/serviceaccount/{k}")]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or(TokenError::Subject)
    };
    let (namespace, account) = (claim("namespace")?, claim("service-account.name")?);
    let (uid, secret) = (claim("service-account.uid")?, claim("secret.name")?);
    let name = format!("system:serviceaccount:{namespace}:{account}");
    if claims["sub"].as_str() != Some(name.as_str()) {
        return Err(TokenError::Subject);
    }
    let mut bound = Map::new();
    bound.insert("secret".into(), json!({"name": secret}));
    Ok(ServiceAccountUser {
        name,
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
        ],
        namespace: namespace.into(),
        service_account: account.into(),
        uid: uid.into(),
        bound,
        audiences: Vec::new(),
        id: None,
        legacy: true,
    })
}

/// The length of `header.payload`, the signed part of a compact JWS.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn signer() -> TokenSigner {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenSigner::from_pkcs8(
            &pair.serialize_der(),
            &rcgen::PublicKeyData::subject_public_key_info(&pair),
            ISSUER,
        )
        .unwrap()
    }

    fn claims(aud: &str, iat: i64, exp: i64) -> Value {
        json!({
            "iss": ISSUER, "sub": "system:serviceaccount:prod:robot", "aud": [aud], "iat": iat, "nbf": iat, "exp": exp,
            "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "robot", "uid": "u1"}, "pod": {"name": "web", "uid": "p1"}},
        })
    }

    #[test]
    fn tokens_are_verified_as_upstream_verifies_them() {
        let s = signer();
        let other = signer();
        let good = s.sign(&claims(ISSUER, 1000, 4600)).unwrap();
        let tampered = {
            let p: Vec<&str> = good.split('.').collect();
            let forged =
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(ISSUER, 1000, 999_999)).unwrap());
            format!("{}.{forged}.{}", p[0], p[2])
        };
        let mut wrong_sub = claims(ISSUER, 1000, 4600);
        wrong_sub["sub"] = json!("system:serviceaccount:kube-system:admin");
        let cases: Vec<(&str, String, i64, Result<(), TokenError>)> = vec![
            ("valid", good.clone(), 2000, Ok(())),
            (
                "expired beyond the leeway",
                good.clone(),
                4600 + 61,
                Err(TokenError::Expired),
            ),
            ("expired within the leeway", good.clone(), 4600 + 30, Ok(())),
            (
                "not valid yet",
                good.clone(),
                1000 - 61,
                Err(TokenError::NotYetValid),
            ),
            (
                "another audience",
                s.sign(&claims("vault", 1000, 4600)).unwrap(),
                2000,
                Err(TokenError::Audience(vec!["vault".into()])),
            ),
            (
                "payload altered",
                tampered,
                2000,
                Err(TokenError::Signature),
            ),
            (
                "signed by another key",
                other.sign(&claims(ISSUER, 1000, 4600)).unwrap(),
                2000,
                Err(TokenError::Signature),
            ),
            (
                "subject disagrees with the claims",
                s.sign(&wrong_sub).unwrap(),
                2000,
                Err(TokenError::Subject),
            ),
            ("not a JWS", "abc".into(), 2000, Err(TokenError::Malformed)),
        ];
        for (name, token, now, want) in cases {
            let got = s.verify(&token, &[ISSUER], now);
            match want {
                Ok(()) => {
                    let user = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(user.name, "system:serviceaccount:prod:robot", "{name}");
                    assert_eq!(
                        user.groups,
                        vec!["system:serviceaccounts", "system:serviceaccounts:prod"],
                        "{name}"
                    );
                    assert_eq!(user.uid, "u1", "{name}");
                    assert_eq!(
                        user.bound.get("pod"),
                        Some(&json!({"name": "web", "uid": "p1"})),
                        "{name}"
                    );
                }
                Err(e) => assert_eq!(got.err(), Some(e), "{name}"),
            }
        }
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
