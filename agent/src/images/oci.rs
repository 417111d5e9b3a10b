//! OCI image layouts: packing one layer and a config into an archive (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) and reading such an archive back into the descriptors
//! an importer needs. Media types are the OCI ones; the layer is an uncompressed tar, so its
//! digest is also its diff ID.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::tar::{read_files, Tree};
use super::{sha256_digest, Error, Result};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation on an index entry that names the image (containerd reads it on import).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// What a container gets from its image when the pod spec does not say otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(
        rename = "Entrypoint",
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub entrypoint: Vec<String>,
    #[serde(
        rename = "Cmd",
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cmd: Vec<String>,
    #[serde(
        rename = "Env",
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        rename = "WorkingDir",
        default,
        deserialize_with = "null_is_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
}

/// Docker writes `null` for unset fields (`"Entrypoint": null`); read it as empty.
fn null_is_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A content descriptor: what a manifest or index points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, data: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(data),
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        }
    }
}

/// An image ready to be written as a layout archive.
pub struct OciImage {
    /// The name containerd will store it under, e.g. `kybern.local/busybox:latest`.
    pub name: String,
    pub config: ImageConfig,
    pub rootfs: Tree,
}

impl OciImage {
    /// The OCI image layout as a tar archive. Deterministic: the same name, config and files
    /// always give the same bytes, so the manifest digest identifies the content.
    pub fn to_layout_tar(&self) -> Result<Vec<u8>> {
        let layer = self.rootfs.to_tar()?;
        let layer_desc = Descriptor::of(MEDIA_TYPE_LAYER, &layer);
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": self.config,
            "rootfs": { "type": "layers", "diff_ids": [layer_desc.digest] },
            "history": [{ "created_by": "kybern images packer" }],
        });
        let config = serde_json::to_vec(&config).map_err(|e| Error::Layout(e.to_string()))?;
        let config_desc = Descriptor::of(MEDIA_TYPE_CONFIG, &config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config_desc,
            "layers": [layer_desc],
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Layout(e.to_string()))?;
        let mut manifest_desc = Descriptor::of(MEDIA_TYPE_MANIFEST, &manifest);
        manifest_desc
            .annotations
            .insert(ANNOTATION_CONTAINERD_NAME.into(), self.name.clone());
        manifest_desc
            .annotations
            .insert(ANNOTATION_REF_NAME.into(), self.name.clone());
        let index = json!({ "schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [manifest_desc] });
        let index = serde_json::to_vec(&index).map_err(|e| Error::Layout(e.to_string()))?;

        let mut tree = Tree::new();
        tree.file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )
        .file("index.json", 0o644, index);
        for (desc, data) in [
            (&layer_desc, layer),
            (&config_desc, config),
            (&manifest_desc, manifest),
        ] {
            tree.file(&blob_path(&desc.digest)?, 0o644, data);
        }
        tree.to_tar()
    }
}

fn blob_path(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::Layout(format!("unsupported digest {digest}")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// One image found in a layout archive: its name and manifest, the blobs it needs, and what
/// an importer must record.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub name: String,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The uncompressed digests of the layers, from the config, in order.
    pub diff_ids: Vec<String>,
    pub image_config: ImageConfig,
}

/// A parsed layout archive: its images and every blob by digest.
pub struct Layout {
    pub images: Vec<LayoutImage>,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ManifestJson {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default, deserialize_with = "null_is_default")]
    config: ImageConfig,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// What an importer needs from an image config blob: the container defaults and the
/// layers' diff IDs, in order.
pub fn parse_config(data: &[u8]) -> Result<(ImageConfig, Vec<String>)> {
    let config: ConfigJson =
        serde_json::from_slice(data).map_err(|e| Error::Layout(format!("image config: {e}")))?;
    Ok((config.config, config.rootfs.diff_ids))
}

/// Reads an OCI image layout archive. Each index entry must be a single-platform manifest
/// with a name annotation (nested indexes are not followed yet). Blob digests are verified.
pub fn read_layout(archive: &[u8]) -> Result<Layout> {
    let files = read_files(archive)?;
    let index = files
        .get("index.json")
        .ok_or_else(|| Error::Layout("no index.json".into()))?;
    let index: IndexJson =
        serde_json::from_slice(index).map_err(|e| Error::Layout(format!("index.json: {e}")))?;
    let mut blobs = BTreeMap::new();
    for (path, data) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = format!("sha256:{hex}");
            if sha256_digest(data) != digest {
                return Err(Error::Layout(format!(
                    "blob {digest} does not match its content"
                )));
            }
            blobs.insert(digest, data.clone());
        }
    }
    let blob = |d: &Descriptor| -> Result<&Vec<u8>> {
        blobs
            .get(&d.digest)
            .ok_or_else(|| Error::Layout(format!("missing blob {}", d.digest)))
    };
    let mut images = Vec::new();
    for manifest in &index.manifests {
        if manifest.media_type != MEDIA_TYPE_MANIFEST
            && manifest.media_type != DOCKER_MEDIA_TYPE_MANIFEST
        {
            return Err(Error::Layout(format!(
                "unsupported index entry {}",
                manifest.media_type
            )));
        }
        let name = manifest
            .annotations
            .get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| manifest.annotations.get(ANNOTATION_REF_NAME))
            .ok_or_else(|| {
                Error::Layout(format!(
                    "manifest {} has no name annotation",
                    manifest.digest
                ))
            })?;
        let parsed: ManifestJson = serde_json::from_slice(blob(manifest)?)
            .map_err(|e| Error::Layout(format!("manifest: {e}")))?;
        let config: ConfigJson = serde_json::from_slice(blob(&parsed.config)?)
            .map_err(|e| Error::Layout(format!("config: {e}")))?;
        if config.rootfs.diff_ids.len() != parsed.layers.len() {
            return Err(Error::Layout(format!(
                "{name}: layers and diff_ids differ in number"
            )));
        }
        for layer in &parsed.layers {
            blob(layer)?;
        }
        images.push(LayoutImage {
            name: name.clone(),
            manifest: manifest.clone(),
            config: parsed.config,
            layers: parsed.layers,
            diff_ids: config.rootfs.diff_ids,
            image_config: config.config,
        });
    }
    Ok(Layout { images, blobs })
}

/// The snapshot chain IDs of a stack of layers, as the OCI image spec defines them:
/// the first is the first diff ID, each next is sha256 of "<previous chain ID> <diff ID>".
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(prev) => sha256_digest(format!("{prev} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, content: &[u8]) -> OciImage {
        let mut rootfs = Tree::new();
        rootfs
            .dir("bin", 0o755)
            .file("bin/tool", 0o755, content.to_vec());
        OciImage {
            name: name.into(),
            config: ImageConfig {
                cmd: vec!["/bin/tool".into()],
                env: vec!["PATH=/bin".into()],
                ..Default::default()
            },
            rootfs,
        }
    }

    #[test]
    fn packing_the_same_inputs_twice_gives_the_same_manifest_digest() {
        let a = read_layout(&image("t:1", b"x").to_layout_tar().unwrap()).unwrap();
        let b = read_layout(&image("t:1", b"x").to_layout_tar().unwrap()).unwrap();
        let c = read_layout(&image("t:1", b"y").to_layout_tar().unwrap()).unwrap();
        assert_eq!(a.images[0].manifest.digest, b.images[0].manifest.digest);
        assert_ne!(
            a.images[0].manifest.digest, c.images[0].manifest.digest,
            "content changes the digest"
        );
    }

    #[test]
    fn a_packed_layout_reads_back_with_name_config_and_layer() {
        let layout =
            read_layout(&image("kybern.local/t:1", b"x").to_layout_tar().unwrap()).unwrap();
        let [img] = layout.images.as_slice() else {
            panic!("one image expected")
        };
        assert_eq!(img.name, "kybern.local/t:1");
        assert_eq!(img.image_config.cmd, vec!["/bin/tool"]);
        assert_eq!(img.layers.len(), 1);
        assert_eq!(img.layers[0].media_type, MEDIA_TYPE_LAYER);
        assert_eq!(
            img.diff_ids,
            vec![img.layers[0].digest.clone()],
            "uncompressed layer: digest is the diff ID"
        );
        let layer = read_files(&layout.blobs[&img.layers[0].digest]).unwrap();
        assert_eq!(layer["bin/tool"], b"x");
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_rejected() {
        let mut t = Tree::new();
        t.file("index.json", 0o644, br#"{"manifests":[]}"#.to_vec())
            .file(
                &format!("blobs/sha256/{}", "0".repeat(64)),
                0o644,
                b"not it".to_vec(),
            );
        assert!(matches!(
            read_layout(&t.to_tar().unwrap()),
            Err(Error::Layout(_))
        ));
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let d1 = sha256_digest(b"1");
        let d2 = sha256_digest(b"2");
        let ids = chain_ids(&[d1.clone(), d2.clone()]);
        assert_eq!(ids[0], d1, "the first chain ID is the first diff ID");
        assert_eq!(ids[1], sha256_digest(format!("{d1} {d2}").as_bytes()));
    }
}
