//! Encryption at rest: upstream's `EncryptionConfiguration` (apiserver.config.k8s.io/v1)
//! and the value transformer it describes.
//!
//! Each entry names resources (`secrets`, `deployments.apps`, `*.` for the core group,
//! `*.apps`, `*.*`) and an ordered list of providers: the first one writes, every one
//! reads the records carrying its prefix, as upstream's prefix transformer
//! (`k8s:enc:aesgcm:v1:<key name>:` for each AES-GCM key, `k8s:enc:secretbox:v1:<key
//! name>:` for each secretbox key, nothing for `identity`, which
//! reads only records that are not encrypted). The first matching entry wins; records of
//! resources no entry names are stored as they are. [`super::encrypted`] applies the
//! transformer to a store.

mod aesgcm;
mod secretbox;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use aesgcm::AesGcm;
use secretbox::SecretBox;

/// Where `kybern server`/`up` keep the configuration they generate, in the data dir.
pub const DEFAULT_FILE: &str = "encryption-config.yaml";
/// What every encrypted record starts with, whichever provider wrote it.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";
const API_VERSION: &str = "apiserver.config.k8s.io/v1";
const KIND: &str = "EncryptionConfiguration";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the encryption configuration {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("invalid encryption configuration {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("writing the encryption configuration {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<ResourceConfiguration>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceConfiguration {
    pub resources: Vec<String>,
    pub providers: Vec<ProviderConfiguration>,
}

/// One provider: exactly one field is set.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

impl ProviderConfiguration {
    /// The provider's name and keys when it is one kybern encrypts with (`aesgcm`,
    /// `secretbox`).
    pub fn keyed(&self) -> Option<(&'static str, &KeysConfiguration)> {
        match (&self.aesgcm, &self.secretbox) {
            (Some(keys), _) => Some(("aesgcm", keys)),
            (None, Some(keys)) => Some(("secretbox", keys)),
            (None, None) => None,
        }
    }

    /// [`Self::keyed`], to change the keys.
    pub fn keys_mut(&mut self) -> Option<&mut Vec<Key>> {
        match (&mut self.aesgcm, &mut self.secretbox) {
            (Some(keys), _) | (None, Some(keys)) => Some(&mut keys.keys),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfiguration {
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub name: String,
    /// Base64 of the key's bytes.
    pub secret: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IdentityConfiguration {}

impl Key {
    /// A new random 32-byte key named `name` (AES-256, or a secretbox key).
    pub fn generate(name: &str) -> Key {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random generator works");
        Key {
            name: name.to_string(),
            secret: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

impl EncryptionConfiguration {
    /// What a new data dir gets: a fresh AES-256-GCM key for Secrets, and `identity`
    /// after it so records written before encryption was on stay readable.
    pub fn generated(key_name: &str) -> Self {
        EncryptionConfiguration {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            resources: vec![ResourceConfiguration {
                resources: vec!["secrets".into()],
                providers: vec![
                    ProviderConfiguration {
                        aesgcm: Some(KeysConfiguration {
                            keys: vec![Key::generate(key_name)],
                        }),
                        ..Default::default()
                    },
                    ProviderConfiguration {
                        identity: Some(IdentityConfiguration {}),
                        ..Default::default()
                    },
                ],
            }],
        }
    }

    /// Reads and checks `path` (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|error| Error::Read {
            path: path.display().to_string(),
            error,
        })?;
        let invalid = |message: String| Error::Invalid {
            path: path.display().to_string(),
            message,
        };
        let config: Self = serde_yaml::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        config.transformer().map_err(invalid)?;
        Ok(config)
    }

    /// Writes the configuration to `path` readable by its owner only (0600), replacing
    /// any file there in one rename so a crash never leaves half a key file.
    pub fn save(&self, path: &Path) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let write_err = |error| Error::Write {
            path: path.display().to_string(),
            error,
        };
        let yaml = serde_yaml::to_string(self).expect("the configuration serializes");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.tmp.{}.{seq}", std::process::id()));
        let result = (|| {
            use std::io::Write;
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(yaml.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_err)
    }

    /// The transformer this configuration describes, or what is wrong with it.
    pub fn transformer(&self) -> std::result::Result<Transformer, String> {
        if self.api_version != API_VERSION || self.kind != KIND {
            return Err(format!(
                "expected apiVersion {API_VERSION} and kind {KIND}, got {} {}",
                self.api_version, self.kind
            ));
        }
        let mut rules = Vec::new();
        for (i, entry) in self.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            if entry.resources.is_empty() {
                return Err(format!(
                    "{at}.resources: Required value: at least one resource has to be specified"
                ));
            }
            if entry.providers.is_empty() {
                return Err(format!(
                    "{at}.providers: Required value: at least one provider has to be specified"
                ));
            }
            let chain = std::sync::Arc::new(Chain::of(&entry.providers, &at)?);
            for (j, resource) in entry.resources.iter().enumerate() {
                let matcher = Matcher::parse(resource).map_err(|m| {
                    format!("{at}.resources[{j}]: Invalid value: {resource:?}: {m}")
                })?;
                rules.push((matcher, chain.clone()));
            }
        }
        Ok(Transformer { rules })
    }

    /// Each entry's resources and how its first provider writes them (`aesgcm key
    /// "k1"`, `plaintext`), as `kybern secrets-encrypt status` prints them.
    pub fn writers(&self) -> Vec<(String, String)> {
        self.resources
            .iter()
            .map(|entry| {
                let writer = match entry.providers.first().and_then(|p| p.keyed()) {
                    Some((provider, keys)) => keys
                        .keys
                        .first()
                        .map_or(format!("{provider} without keys"), |k| {
                            format!("{provider} key {:?}", k.name)
                        }),
                    None => "plaintext".into(),
                };
                (entry.resources.join(","), writer)
            })
            .collect()
    }

    /// The first entry's first provider: where a rotation puts a new key.
    pub fn first_provider_mut(&mut self) -> Option<&mut ProviderConfiguration> {
        self.resources.first_mut()?.providers.first_mut()
    }
}

/// Which stored keys an entry's resource name covers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// `plural` in `group` (`""` is core): `secrets`, `deployments.apps`.
    Resource { group: String, plural: String },
    /// `*.` (core) or `*.apps`.
    Group(String),
    /// `*.*`.
    All,
}

impl Matcher {
    fn parse(name: &str) -> std::result::Result<Self, &'static str> {
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("resource name should not contain any upper case characters");
        }
        let (plural, group) = name.split_once('.').unwrap_or((name, ""));
        match (plural, group) {
            ("*", "*") => Ok(Matcher::All),
            ("*", g) => {
                if name == "*" {
                    Err("use '*.' for all resources of the core group or '*.*' for all resources")
                } else {
                    Ok(Matcher::Group(g.to_string()))
                }
            }
            ("", _) => Err("resource name cannot be empty"),
            (p, g) => Ok(Matcher::Resource {
                group: g.to_string(),
                plural: p.to_string(),
            }),
        }
    }

    fn matches(&self, group: &str, plural: &str) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Group(g) => g == group,
            Matcher::Resource {
                group: g,
                plural: p,
            } => g == group && p == plural,
        }
    }
}

/// The group and plural of a storage key, `/registry/<group or core>/<plural>/...`.
fn group_resource(key: &str) -> Option<(&str, &str)> {
    let mut parts = key.strip_prefix("/registry/")?.splitn(3, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    parts.next()?;
    Some((if group == "core" { "" } else { group }, plural))
}

/// One provider of a chain, with the prefix its records carry.
struct Provider {
    prefix: Vec<u8>,
    kind: Kind,
}

enum Kind {
    Identity,
    AesGcm(Box<AesGcm>),
    SecretBox(Box<SecretBox>),
}

/// An entry's providers in order: the first writes.
pub struct Chain {
    providers: Vec<Provider>,
}

impl Chain {
    fn of(providers: &[ProviderConfiguration], at: &str) -> std::result::Result<Self, String> {
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, p) in providers.iter().enumerate() {
            let at = format!("{at}.providers[{i}]");
            let set = [
                p.aesgcm.is_some(),
                p.aescbc.is_some(),
                p.secretbox.is_some(),
                p.identity.is_some(),
                p.kms.is_some(),
            ];
            match set.iter().filter(|s| **s).count() {
                0 => return Err(format!("{at}: Invalid value: provider does not contain any of the expected providers: KMS, secretbox, aesgcm, aescbc or identity")),
                1 => {}
                _ => return Err(format!("{at}: Invalid value: more than one provider specified in a single element, should split into different list elements")),
            }
            if p.identity.is_some() {
                out.push(Provider {
                    prefix: Vec::new(),
                    kind: Kind::Identity,
                });
                continue;
            }
            let (provider, keys) = match p.keyed() {
                Some(keyed) => keyed,
                None => {
                    let name = if p.aescbc.is_some() { "aescbc" } else { "kms" };
                    return Err(format!(
                        "{at}: Unsupported value: the {name} provider is not supported by kybern: use aesgcm or secretbox (or identity)"
                    ));
                }
            };
            if keys.keys.is_empty() {
                return Err(format!(
                    "{at}.{provider}.keys: Required value: keys list cannot be empty"
                ));
            }
            for (k, key) in keys.keys.iter().enumerate() {
                let at = format!("{at}.{provider}.keys[{k}]");
                if key.name.is_empty() || key.name.contains(':') {
                    return Err(format!("{at}.name: Invalid value: {:?}: a key name must be non-empty and contain no ':'", key.name));
                }
                if !names.insert(key.name.clone()) {
                    return Err(format!("{at}.name: Duplicate value: {:?}", key.name));
                }
                let secret = base64::engine::general_purpose::STANDARD
                    .decode(key.secret.trim())
                    .map_err(|e| format!("{at}.secret: Invalid value: REDACTED: secrets must be base64 encoded: {e}"))?;
                let kind = if provider == "aesgcm" {
                    AesGcm::new(&secret).map(|c| Kind::AesGcm(Box::new(c)))
                } else {
                    SecretBox::new(&secret).map(|c| Kind::SecretBox(Box::new(c)))
                }
                .map_err(|m| format!("{at}.secret: Invalid value: REDACTED: {m}"))?;
                out.push(Provider {
                    prefix: format!("k8s:enc:{provider}:v1:{}:", key.name).into_bytes(),
                    kind,
                });
            }
        }
        Ok(Chain { providers: out })
    }

    fn write(&self, key: &str, value: &[u8]) -> std::result::Result<Bytes, String> {
        let first = &self.providers[0];
        match &first.kind {
            Kind::Identity => Ok(Bytes::copy_from_slice(value)),
            Kind::AesGcm(gcm) => {
                let mut out = Vec::with_capacity(first.prefix.len() + 12 + value.len() + 16);
                out.extend_from_slice(&first.prefix);
                gcm.seal(key.as_bytes(), value, &mut out)?;
                Ok(out.into())
            }
            Kind::SecretBox(sb) => {
                let mut out = Vec::with_capacity(first.prefix.len() + 24 + 16 + value.len());
                out.extend_from_slice(&first.prefix);
                sb.seal(value, &mut out)?;
                Ok(out.into())
            }
        }
    }

    /// As upstream's prefix transformer: the first provider whose prefix the record
    /// carries reads it; `identity` passes over encrypted records.
    fn read(&self, key: &str, raw: &Bytes) -> std::result::Result<Read, String> {
        let mut identity_skipped = false;
        for (i, p) in self.providers.iter().enumerate() {
            if !raw.starts_with(&p.prefix) {
                continue;
            }
            let stale = i != 0;
            match &p.kind {
                Kind::Identity if raw.starts_with(ENCRYPTED_PREFIX) => identity_skipped = true,
                Kind::Identity => {
                    return Ok(Read {
                        value: raw.clone(),
                        stale,
                    })
                }
                Kind::AesGcm(gcm) => {
                    let value = gcm.open(key.as_bytes(), &raw[p.prefix.len()..])?;
                    return Ok(Read {
                        value: value.into(),
                        stale,
                    });
                }
                Kind::SecretBox(sb) => {
                    let value = sb.open(&raw[p.prefix.len()..])?;
                    return Ok(Read {
                        value: value.into(),
                        stale,
                    });
                }
            }
        }
        let reason = if identity_skipped {
            "identity transformer tried to read encrypted data"
        } else {
            "no matching prefix found"
        };
        Err(format!(
            "{reason} (the record is {}, which no provider of the encryption configuration reads)",
            describe(raw)
        ))
    }
}

/// A record as read back: its plaintext, and whether a provider other than the writing
/// one read it (so a rewrite would change how it is stored).
pub struct Read {
    pub value: Bytes,
    pub stale: bool,
}

/// The rules of an encryption configuration, applied to storage keys.
pub struct Transformer {
    rules: Vec<(Matcher, std::sync::Arc<Chain>)>,
}

impl Transformer {
    fn chain(&self, key: &str) -> Option<&Chain> {
        let (group, plural) = group_resource(key)?;
        self.rules
            .iter()
            .find(|(m, _)| m.matches(group, plural))
            .map(|(_, c)| c.as_ref())
    }

    /// Whether records under `key` are transformed at all.
    pub fn covers(&self, key: &str) -> bool {
        self.chain(key).is_some()
    }

    /// What is stored for `value` under `key`.
    pub fn to_storage(&self, key: &str, value: Bytes) -> std::result::Result<Bytes, String> {
        match self.chain(key) {
            Some(chain) => chain.write(key, &value),
            None => Ok(value),
        }
    }

    /// The plaintext of a stored record, or why it cannot be read (upstream's
    /// messages, with which prefix the record carries).
    pub fn from_storage(&self, key: &str, raw: &Bytes) -> std::result::Result<Read, String> {
        match self.chain(key) {
            Some(chain) => chain.read(key, raw),
            None if raw.starts_with(ENCRYPTED_PREFIX) => Err(format!(
                "no matching prefix found (the record is {}, and the encryption configuration names no provider for this resource)",
                describe(raw)
            )),
            None => Ok(Read {
                value: raw.clone(),
                stale: false,
            }),
        }
    }
}

/// How a stored record is kept, from its prefix alone: `aesgcm key "k1"`, or
/// `plaintext` for one no provider encrypted.
pub fn describe(raw: &[u8]) -> String {
    let Some(rest) = raw.strip_prefix(ENCRYPTED_PREFIX) else {
        return "plaintext".into();
    };
    let mut parts = rest.splitn(4, |b| *b == b':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(provider), Some(_version), Some(name), Some(_)) => format!(
            "{} key {:?}",
            String::from_utf8_lossy(provider),
            String::from_utf8_lossy(name)
        ),
        _ => "encrypted with an unknown prefix".into(),
    }
}

#[cfg(test)]
mod tests;
