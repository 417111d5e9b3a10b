//! Bootstrap tokens as upstream (and kubeadm) define them, shared by the authenticator,
//! the bootstrapsigner and tokencleaner loops, `kybern token` and the joining agent: the
//! token's shape (`[a-z0-9]{6}.[a-z0-9]{16}`), the `kube-system/bootstrap-token-<id>`
//! Secret that holds it, the detached JWS that signs `cluster-info` with it, and
//! kubeadm's CA public key pin (`sha256:<hex>`).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::object;

pub const NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const TOKEN_ID: &str = "token-id";
pub const TOKEN_SECRET: &str = "token-secret";
pub const DESCRIPTION: &str = "description";
pub const EXPIRATION: &str = "expiration";
pub const EXTRA_GROUPS: &str = "auth-extra-groups";
pub const USAGE_AUTHENTICATION: &str = "usage-bootstrap-authentication";
pub const USAGE_SIGNING: &str = "usage-bootstrap-signing";
/// The user of a token is `system:bootstrap:<id>`, in this group.
pub const USER_PREFIX: &str = "system:bootstrap:";
pub const GROUP: &str = "system:bootstrappers";
/// Extra groups must be below [`GROUP`].
pub const EXTRA_GROUP_PREFIX: &str = "system:bootstrappers:";
/// kubeadm's default group for node tokens.
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// Where the cluster's public information lives (`kube-public/cluster-info`).
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO: &str = "cluster-info";
pub const CLUSTER_INFO_KUBECONFIG: &str = "kubeconfig";
/// `jws-kubeconfig-<id>`: the detached signature of the kubeconfig with token `<id>`.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token, `<id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Token {
    /// The secret half is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.id)
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn is_part(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl Token {
    /// The token in `s` if it has the bootstrap token shape.
    pub fn parse(s: &str) -> Option<Token> {
        let (id, secret) = s.split_once('.')?;
        (is_part(id, ID_LEN) && is_part(secret, SECRET_LEN)).then(|| Token {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// Whether `s` is a token id (`[a-z0-9]{6}`).
    pub fn is_id(s: &str) -> bool {
        is_part(s, ID_LEN)
    }

    /// A new random token (from the system's secure random source).
    pub fn generate() -> Token {
        use ring::rand::SecureRandom as _;
        let rng = ring::rand::SystemRandom::new();
        let pick = |n: usize| {
            let mut out = String::with_capacity(n);
            while out.len() < n {
                let mut b = [0u8; 1];
                rng.fill(&mut b).expect("the system's random source works");
                // 252 = 7 * 36: rejecting larger bytes keeps every character equally likely.
                if b[0] < 252 {
                    out.push(ALPHABET[usize::from(b[0]) % ALPHABET.len()] as char);
                }
            }
            out
        };
        Token {
            id: pick(ID_LEN),
            secret: pick(SECRET_LEN),
        }
    }

    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }
}

/// What a token Secret says, besides the token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenOptions {
    pub description: Option<String>,
    /// Unix seconds; none = never expires.
    pub expires: Option<i64>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

/// The `kube-system/bootstrap-token-<id>` Secret holding `token` (as kubeadm writes it).
pub fn secret(token: &Token, options: &TokenOptions) -> Value {
    let mut data = Map::new();
    let mut put = |k: &str, v: &str| {
        data.insert(
            k.to_string(),
            json!(base64::engine::general_purpose::STANDARD.encode(v)),
        );
    };
    put(TOKEN_ID, &token.id);
    put(TOKEN_SECRET, &token.secret);
    if let Some(d) = &options.description {
        put(DESCRIPTION, d);
    }
    if let Some(t) = options.expires {
        put(EXPIRATION, &object::rfc3339(t));
    }
    for usage in &options.usages {
        put(&format!("usage-bootstrap-{usage}"), "true");
    }
    if !options.groups.is_empty() {
        put(EXTRA_GROUPS, &options.groups.join(","));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token.secret_name(), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": data,
    })
}

/// A Secret's `data[key]` (or `stringData[key]`) as text.
pub fn data(secret: &Value, key: &str) -> Option<String> {
    if let Some(s) = secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    let b64 = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

/// Whether a token Secret's `expiration` has passed at `now` (unix seconds); an
/// unparsable one counts as expired, as upstream's helper treats it.
pub fn expired(secret: &Value, now: i64) -> bool {
    match data(secret, EXPIRATION) {
        Some(t) => object::parse_rfc3339(&t).is_none_or(|t| t <= now),
        None => false,
    }
}

/// The token a well-formed token Secret holds (type, name and data agree).
pub fn token_of(secret: &Value) -> Option<Token> {
    if secret["type"].as_str() != Some(SECRET_TYPE) {
        return None;
    }
    let name = object::meta_str(secret, "name")?;
    let id = data(secret, TOKEN_ID)?;
    let token = Token {
        secret: data(secret, TOKEN_SECRET)?,
        id,
    };
    (Token::is_id(&token.id) && is_part(&token.secret, SECRET_LEN) && name == token.secret_name())
        .then_some(token)
}

/// Whether two strings are equal, in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The detached JWS (`<header>..<signature>`, HS256 keyed with the token's secret, `kid`
/// the token id) of `content`, as upstream's bootstrapsigner writes it into
/// `jws-kubeconfig-<id>`.
pub fn detached_jws(content: &str, token: &Token) -> String {
    // The header as go-jose serializes it, so both sides compute the same bytes.
    let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id);
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(content.as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.secret.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{}..{}", b64url(header.as_bytes()), b64url(tag.as_ref()))
}

/// Whether `jws` is the detached signature of `content` with `token`.
pub fn jws_valid(jws: &str, content: &str, token: &Token) -> bool {
    constant_time_eq(jws, &detached_jws(content, token))
}

/// kubeadm's CA pin of a PEM certificate: `sha256:` and the hex SHA-256 of its
/// SubjectPublicKeyInfo (DER).
pub fn ca_cert_hash(cert_pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    ca_cert_hash_der(der.as_ref())
}

/// [`ca_cert_hash`] of a DER certificate.
pub fn ca_cert_hash_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests;
