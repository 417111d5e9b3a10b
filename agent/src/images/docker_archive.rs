//! `docker save` archives: `manifest.json` lists each image's config file, its tags and its
//! layer files (uncompressed tars in older Docker, `blobs/sha256/...` since Docker 25). They
//! are read into the same [`Layout`] an OCI layout gives, with an OCI manifest made up for
//! each image, so import treats both alike. [`read_archive`] takes either kind.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::oci::{
    parse_config, read_layout, Descriptor, Layout, LayoutImage, MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
};
use super::tar::{read_files, Tree};
use super::{sha256_digest, Error, Result};

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Reads an OCI image layout or a `docker save` archive.
pub fn read_archive(archive: &[u8]) -> Result<Layout> {
    let files = read_files(archive)?;
    match files.get("manifest.json") {
        Some(manifest) => read_docker_archive(manifest, &files),
        None => read_layout(archive),
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: sha256_digest(data),
        size: data.len() as i64,
        annotations: BTreeMap::new(),
    }
}

fn read_docker_archive(manifest: &[u8], files: &BTreeMap<String, Vec<u8>>) -> Result<Layout> {
    let bad = |why: String| Error::Layout(format!("docker archive: {why}"));
    let entries: Vec<ManifestEntry> =
        serde_json::from_slice(manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let file = |path: &str| {
        files
            .get(path.trim_start_matches("./"))
            .ok_or_else(|| bad(format!("{path} is listed in manifest.json but missing")))
    };
    let mut blobs = BTreeMap::new();
    let mut images = Vec::new();
    for entry in entries {
        let config = file(&entry.config)?;
        let config_desc = descriptor(MEDIA_TYPE_CONFIG, config);
        // Docker names the config after its digest: `<hex>.json` or `blobs/sha256/<hex>`.
        let stem = entry
            .config
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if stem.len() == 64 && config_desc.digest != format!("sha256:{stem}") {
            return Err(bad(format!("{} does not match its content", entry.config)));
        }
        let (image_config, diff_ids) = parse_config(config)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "{} lists {} layers but its config {} diff IDs",
                entry.config,
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let data = file(path)?;
            let gzip = data.starts_with(&[0x1f, 0x8b]);
            let desc = descriptor(
                if gzip {
                    MEDIA_TYPE_LAYER_GZIP
                } else {
                    MEDIA_TYPE_LAYER
                },
                data,
            );
            if !gzip && &desc.digest != diff_id {
                return Err(bad(format!(
                    "layer {path} does not match diff ID {diff_id}"
                )));
            }
            blobs.insert(desc.digest.clone(), data.clone());
            layers.push(desc);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config_desc,
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
        let manifest_desc = descriptor(MEDIA_TYPE_MANIFEST, &manifest);
        blobs.insert(config_desc.digest.clone(), config.clone());
        blobs.insert(manifest_desc.digest.clone(), manifest);
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            return Err(bad(format!(
                "image {} has no RepoTags; save it by name (docker save name:tag)",
                entry.config
            )));
        }
        for tag in tags {
            images.push(LayoutImage {
                name: tag,
                manifest: manifest_desc.clone(),
                config: config_desc.clone(),
                layers: layers.clone(),
                diff_ids: diff_ids.clone(),
                image_config: image_config.clone(),
            });
        }
    }
    Ok(Layout { images, blobs })
}

/// Writes a `docker save` archive in Docker's classic layout (`<hex>.json`,
/// `<hex>/layer.tar`) from uncompressed layers and a config; for tests and tools.
pub fn write_docker_archive(
    layers: &[Vec<u8>],
    config: &[u8],
    repo_tags: &[&str],
) -> Result<Vec<u8>> {
    let config_hex = sha256_digest(config)["sha256:".len()..].to_string();
    let mut tree = Tree::new();
    let mut layer_paths = Vec::new();
    for layer in layers {
        let hex = sha256_digest(layer)["sha256:".len()..].to_string();
        let path = format!("{hex}/layer.tar");
        tree.file(&path, 0o644, layer.clone());
        layer_paths.push(path);
    }
    tree.file(&format!("{config_hex}.json"), 0o644, config.to_vec());
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": repo_tags,
        "Layers": layer_paths,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Layout(e.to_string()))?;
    tree.file("manifest.json", 0o644, manifest);
    tree.to_tar()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::ImageConfig;

    fn layer(content: &[u8]) -> Vec<u8> {
        let mut t = Tree::new();
        t.file("bin/tool", 0o755, content.to_vec());
        t.to_tar().unwrap()
    }

    fn config(diff_ids: &[&Vec<u8>]) -> Vec<u8> {
        let ids: Vec<String> = diff_ids.iter().map(|l| sha256_digest(l)).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/tool"], "Entrypoint": null, "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": ids},
        }))
        .unwrap()
    }

    #[test]
    fn a_docker_archive_reads_as_one_image_per_tag_with_an_oci_manifest() {
        let (l1, l2) = (layer(b"one"), layer(b"two"));
        let archive = write_docker_archive(
            &[l1.clone(), l2.clone()],
            &config(&[&l1, &l2]),
            &["busybox:latest", "me/bb:1"],
        )
        .unwrap();
        let layout = read_archive(&archive).unwrap();
        let names: Vec<&str> = layout.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["busybox:latest", "me/bb:1"]);
        let img = &layout.images[0];
        assert_eq!(img.image_config.cmd, ["/bin/tool"]);
        assert!(
            img.image_config.entrypoint.is_empty(),
            "null entrypoint reads as none"
        );
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.diff_ids, [sha256_digest(&l1), sha256_digest(&l2)]);
        assert_eq!(img.layers[0].media_type, MEDIA_TYPE_LAYER);
        let manifest: serde_json::Value =
            serde_json::from_slice(&layout.blobs[&img.manifest.digest]).unwrap();
        assert_eq!(manifest["config"]["digest"], img.config.digest);
        assert_eq!(manifest["layers"][1]["digest"], sha256_digest(&l2));
        for d in [
            &img.config.digest,
            &img.layers[0].digest,
            &img.layers[1].digest,
        ] {
            assert_eq!(
                &sha256_digest(&layout.blobs[d]),
                d,
                "blob {d} is stored under its digest"
            );
        }
    }

    #[test]
    fn broken_docker_archives_are_rejected_with_the_reason() {
        let l = layer(b"x");
        let good_config = config(&[&l]);
        let other = layer(b"y");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "untagged",
                write_docker_archive(std::slice::from_ref(&l), &good_config, &[]).unwrap(),
                "no RepoTags",
            ),
            (
                "layer not matching diff ID",
                write_docker_archive(&[other], &good_config, &["a:1"]).unwrap(),
                "does not match diff ID",
            ),
            (
                "layer count differs",
                write_docker_archive(&[l.clone(), l.clone()], &good_config, &["a:1"]).unwrap(),
                "diff IDs",
            ),
        ];
        for (name, archive, want) in cases {
            match read_archive(&archive) {
                Err(Error::Layout(msg)) => assert!(msg.contains(want), "{name}: {msg}"),
                Err(e) => panic!("{name}: unexpected error {e}"),
                Ok(_) => panic!("{name}: accepted"),
            }
        }
    }

    #[test]
    fn oci_layouts_still_read_through_read_archive() {
        let mut rootfs = Tree::new();
        rootfs.file("f", 0o644, b"x".to_vec());
        let oci = crate::images::OciImage {
            name: "kybern.local/t:1".into(),
            config: ImageConfig::default(),
            rootfs,
        };
        let layout = read_archive(&oci.to_layout_tar().unwrap()).unwrap();
        assert_eq!(layout.images[0].name, "kybern.local/t:1");
    }
}
