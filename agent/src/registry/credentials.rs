//! Registry credentials from imagePullSecrets, read as the kubelet reads them:
//! `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, an `auths` map) and the older
//! `kubernetes.io/dockercfg` (`.dockercfg`, the map itself). Each entry has either `auth`
//! (base64 of `user:password`) or `username` and `password`. Keys are registry hosts,
//! optionally with scheme, port, path and `*` wildcards per DNS label; Docker Hub's aliases
//! (`docker.io`, `index.docker.io`, `https://index.docker.io/v1/`, ...) all match it.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use super::reference::{Reference, DOCKER_HUB};
use crate::runtime::RegistryAuth;

pub const SECRET_TYPE_DOCKERCONFIGJSON: &str = "kubernetes.io/dockerconfigjson";
pub const SECRET_TYPE_DOCKERCFG: &str = "kubernetes.io/dockercfg";

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Deserialize, Default)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

impl DockerConfigEntry {
    /// `auth` wins over the separate fields, as in the kubelet.
    fn credentials(&self) -> Option<RegistryAuth> {
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (username, password) = decoded.split_once(':')?;
            return Some(RegistryAuth {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        if self.username.is_empty() && self.password.is_empty() {
            return None;
        }
        Some(RegistryAuth {
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

/// The registry entries of one secret, or none when it is not a docker config secret or does
/// not parse (the kubelet skips such secrets too).
fn entries(secret: &Secret) -> BTreeMap<String, DockerConfigEntry> {
    let get = |key: &str| -> Option<Vec<u8>> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
    };
    match secret.type_.as_deref() {
        Some(SECRET_TYPE_DOCKERCONFIGJSON) => get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<DockerConfigJson>(&b).ok())
            .map(|c| c.auths)
            .unwrap_or_default(),
        Some(SECRET_TYPE_DOCKERCFG) => get(".dockercfg")
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// What an image or a config key names: host (lowercase), port and path.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: String,
    path: String,
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// Parses a config key (`https://host:port/path`, `host`, `*.example.com`).
fn parse_key(key: &str) -> Target {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_port(hostport);
    let mut path = path.trim_end_matches('/').to_string();
    // Docker's own config writes Hub credentials under https://index.docker.io/v1/; that
    // path is the old API version, not a repository prefix.
    if is_docker_hub(&host) {
        path = path
            .trim_start_matches("v1")
            .trim_start_matches('/')
            .to_string();
    }
    Target { host, port, path }
}

fn split_port(hostport: &str) -> (String, String) {
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_ascii_lowercase(), p.to_string())
        }
        _ => (hostport.to_ascii_lowercase(), String::new()),
    }
}

/// The kubelet's URL match: same number of DNS labels, each matching (a key label may be a
/// `*` glob), same port, and the key's path a prefix of the image's repository path.
fn key_matches(key: &Target, image: &Target) -> bool {
    let hosts_match = if is_docker_hub(&key.host) && is_docker_hub(&image.host) {
        true
    } else {
        let k: Vec<&str> = key.host.split('.').collect();
        let i: Vec<&str> = image.host.split('.').collect();
        k.len() == i.len() && k.iter().zip(&i).all(|(k, i)| glob(k, i))
    };
    hosts_match
        && key.port == image.port
        && (key.path.is_empty()
            || image.path == key.path
            || image.path.starts_with(&format!("{}/", key.path)))
}

/// `*` matches any run of characters within one label.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(text) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
        }
    }
}

/// What `image` names for credential matching: an image reference, or a bare registry host
/// (`127.0.0.1:5000`, `registry.example.com`).
fn image_target(image: &str) -> Target {
    let bare_host = !image.contains('/')
        && (image.contains(['.', ':']) || image == "localhost")
        && !image.contains('@');
    if bare_host {
        let (host, port) = split_port(image);
        return Target {
            host,
            port,
            path: String::new(),
        };
    }
    match Reference::parse(image) {
        Ok(r) => {
            let (host, port) = split_port(&r.registry);
            Target {
                host,
                port,
                path: r.repository,
            }
        }
        Err(_) => Target {
            host: DOCKER_HUB.into(),
            port: String::new(),
            path: image.to_string(),
        },
    }
}

/// Credentials from the pod's imagePullSecrets for pulling `image` (an image reference as in
/// the pod spec, or a bare registry host). Secrets are tried in order; within one, the most
/// specific key (longest) first. `None` means pull anonymously.
pub fn credentials_for(image: &str, secrets: &[Secret]) -> Option<RegistryAuth> {
    let target = image_target(image);
    secrets.iter().find_map(|secret| {
        let mut keyed: Vec<(String, DockerConfigEntry)> = entries(secret).into_iter().collect();
        keyed.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        keyed
            .iter()
            .filter(|(key, _)| key_matches(&parse_key(key), &target))
            .find_map(|(_, entry)| entry.credentials())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn config_json(registry: &str, entry: &str) -> Secret {
        secret(
            SECRET_TYPE_DOCKERCONFIGJSON,
            ".dockerconfigjson",
            &format!(r#"{{"auths":{{"{registry}":{entry}}}}}"#),
        )
    }

    fn auth(user: &str, pass: &str) -> Option<RegistryAuth> {
        Some(RegistryAuth {
            username: user.into(),
            password: pass.into(),
        })
    }

    #[test]
    fn pull_secrets_give_credentials_for_matching_registries() {
        // base64("alice:s3cret") = YWxpY2U6czNjcmV0
        let b64 = r#"{"auth":"YWxpY2U6czNjcmV0"}"#;
        let fields = r#"{"username":"bob","password":"pw"}"#;
        let cases: Vec<(&str, Secret, &str, Option<RegistryAuth>)> = vec![
            (
                "auth field",
                config_json("127.0.0.1:5000", b64),
                "127.0.0.1:5000/app:v1",
                auth("alice", "s3cret"),
            ),
            (
                "username and password",
                config_json("127.0.0.1:5000", fields),
                "127.0.0.1:5000/app",
                auth("bob", "pw"),
            ),
            (
                "bare host asked",
                config_json("127.0.0.1:5000", fields),
                "127.0.0.1:5000",
                auth("bob", "pw"),
            ),
            (
                "scheme in key",
                config_json("https://reg.example.com", fields),
                "reg.example.com/x/y",
                auth("bob", "pw"),
            ),
            (
                "other port",
                config_json("127.0.0.1:5001", fields),
                "127.0.0.1:5000/app",
                None,
            ),
            (
                "other host",
                config_json("reg.example.com", fields),
                "other.example.com/app",
                None,
            ),
            (
                "hub v1 key for short name",
                config_json("https://index.docker.io/v1/", b64),
                "busybox",
                auth("alice", "s3cret"),
            ),
            (
                "docker.io key for hub image",
                config_json("docker.io", fields),
                "docker.io/library/busybox:1",
                auth("bob", "pw"),
            ),
            (
                "hub key does not match others",
                config_json("docker.io", fields),
                "quay.io/app",
                None,
            ),
            (
                "wildcard label",
                config_json("*.example.com", fields),
                "reg.example.com/app",
                auth("bob", "pw"),
            ),
            (
                "wildcard needs same depth",
                config_json("*.example.com", fields),
                "a.b.example.com/app",
                None,
            ),
            (
                "path prefix matches",
                config_json("reg.example.com/team", fields),
                "reg.example.com/team/app",
                auth("bob", "pw"),
            ),
            (
                "path prefix is per component",
                config_json("reg.example.com/team", fields),
                "reg.example.com/teamx/app",
                None,
            ),
            (
                "empty entry is no credential",
                config_json("127.0.0.1:5000", "{}"),
                "127.0.0.1:5000/app",
                None,
            ),
            (
                "dockercfg secret",
                secret(
                    SECRET_TYPE_DOCKERCFG,
                    ".dockercfg",
                    &format!(r#"{{"127.0.0.1:5000":{fields}}}"#),
                ),
                "127.0.0.1:5000/app",
                auth("bob", "pw"),
            ),
            (
                "opaque secret ignored",
                secret(
                    "Opaque",
                    ".dockerconfigjson",
                    &format!(r#"{{"auths":{{"127.0.0.1:5000":{fields}}}}}"#),
                ),
                "127.0.0.1:5000/app",
                None,
            ),
            (
                "garbage ignored",
                secret(
                    SECRET_TYPE_DOCKERCONFIGJSON,
                    ".dockerconfigjson",
                    "not json",
                ),
                "127.0.0.1:5000/app",
                None,
            ),
        ];
        for (name, secret, image, want) in cases {
            assert_eq!(credentials_for(image, &[secret]), want, "{name}");
        }
    }

    #[test]
    fn the_most_specific_key_and_the_first_matching_secret_win() {
        let both = secret(
            SECRET_TYPE_DOCKERCONFIGJSON,
            ".dockerconfigjson",
            r#"{"auths":{"reg.example.com":{"username":"any","password":"1"},"reg.example.com/team":{"username":"team","password":"2"}}}"#,
        );
        assert_eq!(
            credentials_for("reg.example.com/team/app", std::slice::from_ref(&both)),
            auth("team", "2")
        );
        assert_eq!(
            credentials_for("reg.example.com/other", std::slice::from_ref(&both)),
            auth("any", "1")
        );
        let unrelated = config_json("quay.io", r#"{"username":"q","password":"q"}"#);
        assert_eq!(
            credentials_for("reg.example.com/other", &[unrelated, both]),
            auth("any", "1"),
            "a secret without a match is skipped"
        );
    }
}
