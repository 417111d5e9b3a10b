//! Manifests as registries serve them: OCI and Docker v2 image manifests, and OCI indexes /
//! Docker manifest lists, from which the node's platform (linux/amd64; variants ignored) is
//! picked.

use serde::Deserialize;

use super::{Error, Result};
use crate::images::oci::{
    Descriptor, DOCKER_MEDIA_TYPE_MANIFEST, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};

pub const DOCKER_MEDIA_TYPE_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MEDIA_TYPE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_MEDIA_TYPE_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the manifests endpoint is asked for, most wanted first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The platform this agent runs images for.
pub const OS: &str = "linux";
pub const ARCHITECTURE: &str = "amd64";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// One entry of an index / manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    #[serde(flatten)]
    pub descriptor: Descriptor,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone)]
pub enum Manifest {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<IndexEntry>,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default, rename = "schemaVersion")]
    schema_version: u32,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

/// Parses a manifest body; `content_type` is the response's Content-Type (the body's own
/// `mediaType` wins when present).
pub fn parse(content_type: &str, body: &[u8]) -> Result<(String, Manifest)> {
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|e| Error::Manifest(format!("parsing the manifest: {e}")))?;
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    let media_type = raw
        .media_type
        .clone()
        .unwrap_or_else(|| content_type.to_string());
    if raw.schema_version == 1 || media_type == DOCKER_MEDIA_TYPE_SCHEMA1 {
        return Err(Error::Manifest(
            "Docker schema 1 manifests are not supported; push the image again with a current client"
                .into(),
        ));
    }
    let is_index = media_type == MEDIA_TYPE_INDEX
        || media_type == DOCKER_MEDIA_TYPE_MANIFEST_LIST
        || (raw.manifests.is_some() && raw.layers.is_none());
    if is_index {
        let manifests = raw.manifests.unwrap_or_default();
        let media_type = if media_type.is_empty() {
            MEDIA_TYPE_INDEX.to_string()
        } else {
            media_type
        };
        return Ok((media_type, Manifest::Index { manifests }));
    }
    match (raw.config, raw.layers) {
        (Some(config), Some(layers)) => {
            let media_type = if media_type.is_empty() {
                MEDIA_TYPE_MANIFEST.to_string()
            } else {
                media_type
            };
            if media_type != MEDIA_TYPE_MANIFEST && media_type != DOCKER_MEDIA_TYPE_MANIFEST {
                return Err(Error::Manifest(format!(
                    "unsupported manifest media type {media_type}"
                )));
            }
            Ok((media_type, Manifest::Image { config, layers }))
        }
        _ => Err(Error::Manifest(format!(
            "manifest of media type {media_type:?} has neither layers nor manifests"
        ))),
    }
}

/// The entry for `os`/`architecture` (variants are not compared).
pub fn pick_platform<'a>(
    entries: &'a [IndexEntry],
    os: &str,
    architecture: &str,
) -> Option<&'a IndexEntry> {
    entries.iter().find(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == architecture)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, digest: char) -> String {
        format!(
            r#"{{"mediaType":"{MEDIA_TYPE_MANIFEST}","digest":"sha256:{}","size":1,"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            digest.to_string().repeat(64)
        )
    }

    #[test]
    fn manifest_lists_pick_linux_amd64() {
        let cases = [
            (
                "amd64 second",
                vec![entry("arm64", 'a'), entry("amd64", 'b')],
                Some('b'),
            ),
            (
                "amd64 first",
                vec![entry("amd64", 'c'), entry("arm64", 'd')],
                Some('c'),
            ),
            (
                "no amd64",
                vec![entry("arm64", 'e'), entry("s390x", 'f')],
                None,
            ),
        ];
        for (name, entries, want) in cases {
            let body = format!(
                r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MEDIA_TYPE_MANIFEST_LIST}","manifests":[{}]}}"#,
                entries.join(",")
            );
            let (media_type, manifest) = parse("", body.as_bytes()).unwrap();
            assert_eq!(media_type, DOCKER_MEDIA_TYPE_MANIFEST_LIST, "{name}");
            let Manifest::Index { manifests } = manifest else {
                panic!("{name}: an index expected")
            };
            let got =
                pick_platform(&manifests, OS, ARCHITECTURE).map(|e| e.descriptor.digest.clone());
            assert_eq!(
                got,
                want.map(|c| format!("sha256:{}", c.to_string().repeat(64))),
                "{name}"
            );
        }
    }

    #[test]
    fn manifest_kinds_come_from_media_type_or_shape() {
        let d = format!(
            r#"{{"mediaType":"x","digest":"sha256:{}","size":2}}"#,
            "0".repeat(64)
        );
        let image = format!(r#"{{"schemaVersion":2,"config":{d},"layers":[{d}]}}"#);
        let cases = [
            (
                "oci image by content type",
                MEDIA_TYPE_MANIFEST,
                image.clone(),
                Ok(MEDIA_TYPE_MANIFEST),
            ),
            (
                "docker image by content type",
                DOCKER_MEDIA_TYPE_MANIFEST,
                image.clone(),
                Ok(DOCKER_MEDIA_TYPE_MANIFEST),
            ),
            (
                "image without any type",
                "",
                image.clone(),
                Ok(MEDIA_TYPE_MANIFEST),
            ),
            (
                "index by shape",
                "application/json",
                r#"{"schemaVersion":2,"manifests":[]}"#.to_string(),
                Ok("application/json"),
            ),
            (
                "schema 1",
                "",
                r#"{"schemaVersion":1,"name":"x"}"#.to_string(),
                Err(()),
            ),
            (
                "not json",
                MEDIA_TYPE_MANIFEST,
                "<html>".to_string(),
                Err(()),
            ),
        ];
        for (name, content_type, body, want) in cases {
            let got = parse(content_type, body.as_bytes())
                .map(|(t, _)| t)
                .map_err(|_| ());
            assert_eq!(got.as_deref().map_err(|_| ()), want, "{name}");
        }
    }
}
