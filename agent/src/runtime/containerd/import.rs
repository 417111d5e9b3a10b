//! Importing an OCI image layout or `docker save` archive into containerd 1.6+ without the Transfer service
//! (added in 1.7): write every blob into the content store, record the image, then unpack
//! each layer into an overlayfs snapshot named by its chain ID, the way containerd's own
//! client does. All of it runs under the caller's lease; the garbage-collection labels set
//! here (image -> manifest -> config and layers -> snapshot) keep it alive afterwards.

use std::collections::{BTreeMap, HashMap};

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, Image, Info, InfoRequest, UpdateImageRequest, UpdateRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor as CtrDescriptor;

use super::lease::unique_suffix;
use super::{grpc, Containerd, GC_REF_SNAPSHOT, LABEL_CHAIN_ID, LABEL_IMAGE_CONFIG, SNAPSHOTTER};
use crate::images::docker_archive::read_archive;
use crate::images::oci::{chain_ids, Descriptor, LayoutImage};
use crate::runtime::{Error, Result};

/// Blobs go to the content store in pieces of this size, well under gRPC's message limit.
const CHUNK: usize = 1 << 20;

fn ctr_descriptor(d: &Descriptor) -> CtrDescriptor {
    CtrDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d.annotations.clone().into_iter().collect(),
    }
}

/// Labels on a manifest that make the garbage collector keep its config and layers.
fn manifest_gc_labels(image: &LayoutImage) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        image.config.digest.clone(),
    );
    for (i, layer) in image.layers.iter().enumerate() {
        labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    labels
}

impl Containerd {
    /// Imports an OCI image layout archive or a `docker save` archive (told apart by the
    /// latter's `manifest.json`).
    pub(super) async fn import_in_lease(&self, archive: &[u8], lease: &str) -> Result<Vec<String>> {
        let layout = read_archive(archive)?;
        let mut names = Vec::new();
        for image in &layout.images {
            let image = LayoutImage {
                name: crate::registry::normalize(&image.name),
                ..image.clone()
            };
            self.store_image(&image, &layout.blobs, lease).await?;
            names.push(image.name);
        }
        Ok(names)
    }

    /// Writes an image's layers, config and manifest (with the GC labels that tie them
    /// together), unpacks it into snapshots and records it under `image.name`. Every blob
    /// `image` names must be in `blobs`.
    pub(super) async fn store_image(
        &self,
        image: &LayoutImage,
        blobs: &BTreeMap<String, Vec<u8>>,
        lease: &str,
    ) -> Result<()> {
        let blob = |digest: &str| {
            blobs.get(digest).ok_or_else(|| {
                Error::Image(crate::images::Error::Layout(format!(
                    "missing blob {digest}"
                )))
            })
        };
        for layer in &image.layers {
            self.write_blob(blob(&layer.digest)?, &layer.digest, HashMap::new(), lease)
                .await?;
        }
        self.finish_image(
            image,
            blob(&image.config.digest)?,
            blob(&image.manifest.digest)?,
            lease,
        )
        .await
    }

    /// Once every layer is in the content store: writes the config and the manifest (with
    /// the GC labels that tie them together), unpacks the layers into snapshots and records
    /// the image under `image.name`. Shared by import and pull.
    pub(super) async fn finish_image(
        &self,
        image: &LayoutImage,
        config: &[u8],
        manifest: &[u8],
        lease: &str,
    ) -> Result<()> {
        self.write_blob(config, &image.config.digest, HashMap::new(), lease)
            .await?;
        self.write_blob(
            manifest,
            &image.manifest.digest,
            manifest_gc_labels(image),
            lease,
        )
        .await?;
        let chain_id = self.unpack(image, lease).await?;
        let mut labels = HashMap::new();
        labels.insert(GC_REF_SNAPSHOT.to_string(), chain_id.clone());
        self.set_content_labels(&image.config.digest, labels, lease)
            .await?;
        self.record_image(image, &chain_id, lease).await?;
        tracing::debug!(image = %image.name, digest = %image.manifest.digest, %chain_id, "stored and unpacked");
        Ok(())
    }

    /// Writes one blob unless the store already has it; `labels` are set either way.
    pub(super) async fn write_blob(
        &self,
        data: &[u8],
        digest: &str,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> Result<()> {
        let mut content = ContentClient::new(self.channel.clone());
        let info = content
            .info(self.req(
                InfoRequest {
                    digest: digest.to_string(),
                },
                Some(lease),
            ))
            .await;
        match info {
            Ok(_) => return self.set_content_labels(digest, labels, lease).await,
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("content info")(s)),
        }
        let ingest_ref = format!("kybern-import-{digest}-{}", unique_suffix());
        let total = data.len() as i64;
        let mut requests = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(CHUNK).collect()
        };
        let mut offset = 0i64;
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            // The last piece also commits, naming the digest containerd must verify.
            let action = if i == last {
                WriteAction::Commit
            } else {
                WriteAction::Write
            };
            requests.push(WriteContentRequest {
                action: action as i32,
                r#ref: ingest_ref.clone(),
                total,
                expected: digest.to_string(),
                offset,
                data: chunk.to_vec(),
                labels: if i == last {
                    labels.clone()
                } else {
                    HashMap::new()
                },
            });
            offset += chunk.len() as i64;
        }
        let responses = content
            .write(self.req(futures::stream::iter(requests), Some(lease)))
            .await;
        let mut stream = match responses {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => {
                return self.set_content_labels(digest, labels, lease).await
            }
            Err(s) => return Err(grpc("write content")(s)),
        };
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                // Someone else committed the same blob meanwhile: the content is there.
                Err(s) if s.code() == Code::AlreadyExists => {
                    return self.set_content_labels(digest, labels, lease).await
                }
                Err(s) => return Err(grpc("write content")(s)),
            }
        }
    }

    async fn set_content_labels(
        &self,
        digest: &str,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let req = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        ContentClient::new(self.channel.clone())
            .update(self.req(req, Some(lease)))
            .await
            .map_err(grpc("label content"))?;
        Ok(())
    }

    /// Applies each layer on top of the previous one into committed snapshots named by
    /// chain ID (reusing those that exist); returns the top chain ID.
    async fn unpack(&self, image: &LayoutImage, lease: &str) -> Result<String> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let chain = chain_ids(&image.diff_ids);
        let mut parent = String::new();
        for ((layer, chain_id), diff_id) in image.layers.iter().zip(&chain).zip(&image.diff_ids) {
            let stat = StatSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: chain_id.clone(),
            };
            match snapshots.stat(self.req(stat, Some(lease))).await {
                Ok(_) => {
                    parent = chain_id.clone();
                    continue;
                }
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(grpc("stat snapshot")(s)),
            }
            let key = format!("extract-{}-{chain_id}", unique_suffix());
            let prepare = PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: key.clone(),
                parent: parent.clone(),
                labels: HashMap::new(),
            };
            let mounts = snapshots
                .prepare(self.req(prepare, Some(lease)))
                .await
                .map_err(grpc("prepare snapshot"))?
                .into_inner()
                .mounts;
            let apply = ApplyRequest {
                diff: Some(ctr_descriptor(layer)),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            };
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req(apply, Some(lease)))
                .await;
            let applied = applied.map(|r| r.into_inner().applied.map(|d| d.digest));
            // What containerd unpacked must be what the config says, or the chain IDs (and
            // so the snapshot names) would lie about the content.
            if let Ok(Some(unpacked)) = &applied {
                if unpacked != diff_id {
                    self.remove_snapshot(&key, lease).await?;
                    return Err(Error::Image(crate::images::Error::Layout(format!(
                        "layer {}: unpacked content {unpacked} does not match diff ID {diff_id}",
                        layer.digest
                    ))));
                }
            }
            let commit = match applied {
                Ok(_) => {
                    let commit = CommitSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        name: chain_id.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    };
                    snapshots.commit(self.req(commit, Some(lease))).await
                }
                Err(s) => Err(s),
            };
            match commit {
                Ok(_) => {}
                // Unpacked concurrently by another import: use theirs, drop ours.
                Err(s) if s.code() == Code::AlreadyExists => {
                    self.remove_snapshot(&key, lease).await?
                }
                Err(s) => {
                    self.remove_snapshot(&key, lease).await?;
                    return Err(grpc("unpack layer")(s));
                }
            }
            parent = chain_id.clone();
        }
        Ok(parent)
    }

    async fn remove_snapshot(&self, key: &str, lease: &str) -> Result<()> {
        let req = RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.to_string(),
        };
        match SnapshotsClient::new(self.channel.clone())
            .remove(self.req(req, Some(lease)))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("remove snapshot")(s)),
        }
    }

    /// Creates the image record, or points an existing one at this manifest.
    async fn record_image(&self, image: &LayoutImage, chain_id: &str, lease: &str) -> Result<()> {
        let mut labels = HashMap::new();
        labels.insert(LABEL_CHAIN_ID.to_string(), chain_id.to_string());
        let config = serde_json::to_string(&image.image_config).map_err(|e| Error::Io {
            context: "encoding the image config".into(),
            source: std::io::Error::other(e),
        })?;
        labels.insert(LABEL_IMAGE_CONFIG.to_string(), config);
        let record = Image {
            name: image.name.clone(),
            labels,
            target: Some(ctr_descriptor(&Descriptor {
                annotations: Default::default(),
                ..image.manifest.clone()
            })),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        let create = CreateImageRequest {
            image: Some(record.clone()),
            source_date_epoch: None,
        };
        match images.create(self.req(create, Some(lease))).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                };
                images
                    .update(self.req(update, Some(lease)))
                    .await
                    .map_err(grpc("update image"))?;
                Ok(())
            }
            Err(s) => Err(grpc("create image")(s)),
        }
    }
}
