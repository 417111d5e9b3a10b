//! Pulling images from registries: [`crate::registry`] resolves the reference and fetches
//! each blob, verified against its digest; layers the content store already holds are not
//! downloaded again, the others stream into the content store as they arrive (never whole
//! in memory). The config and
//! manifest then go in and the image is unpacked and recorded under a lease exactly as an
//! import is (`import::finish_image`). Failures read as containerd's and the kubelet's do:
//! `failed to pull and unpack image "<ref>": <why>`.

use std::collections::HashMap;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AbortRequest, AddResourceRequest, InfoRequest, Resource, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;

use super::lease::unique_suffix;
use super::{grpc, Containerd};
use crate::images::oci::LayoutImage;
use crate::registry::{self, Reference};
use crate::runtime::{Error, ImageInfo, RegistryAuth, Result};

pub(super) async fn pull(
    rt: &Containerd,
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<ImageInfo> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::Pull(format!(
            "failed to pull and unpack image \"{reference}\": {e}"
        ))
    };
    let parsed = Reference::parse(reference).map_err(|e| failed(&e))?;
    let client = rt.registry_client().map_err(|e| failed(&e))?;
    let mut resolved = registry::resolve(&client, &parsed, auth)
        .await
        .map_err(|e| failed(&e))?;
    let (config, image_config, diff_ids) = resolved.fetch_config().await.map_err(|e| failed(&e))?;
    let lease = rt.lease("pull").await?;
    let stored = async {
        for layer in resolved.layers.clone() {
            if rt.has_content(&layer.digest, &lease).await? {
                continue;
            }
            let mut reader = resolved.open_blob(&layer).await.map_err(|e| failed(&e))?;
            rt.write_blob_from(&mut reader, &layer.digest, layer.size, &lease)
                .await?
                .map_err(|e| failed(&e))?;
        }
        let image = LayoutImage {
            name: resolved.name.clone(),
            manifest: resolved.manifest.clone(),
            config: resolved.config.clone(),
            layers: resolved.layers.clone(),
            diff_ids,
            image_config,
        };
        rt.finish_image(&image, &config, &resolved.manifest_bytes, &lease)
            .await?;
        Ok::<_, Error>(image)
    }
    .await;
    let dropped = rt.drop_lease(&lease).await;
    let image = stored.map_err(|e| match e {
        Error::Pull(_) => e,
        // Unpack's verdict on the content, said without the archive wording.
        Error::Image(crate::images::Error::Layout(msg)) => failed(&msg),
        other => failed(&other),
    })?;
    dropped?;
    tracing::info!(image = %image.name, digest = %image.manifest.digest, "pulled");
    Ok(ImageInfo {
        name: image.name,
        digest: image.manifest.digest,
        config: image.image_config,
    })
}

impl Containerd {
    /// Whether the content store holds this blob (a pull then skips downloading it). A blob
    /// found is added to `lease`, so the collector cannot take it before the image that
    /// will reference it is recorded.
    pub(super) async fn has_content(&self, digest: &str, lease: &str) -> Result<bool> {
        let req = InfoRequest {
            digest: digest.to_string(),
        };
        match ContentClient::new(self.channel.clone())
            .info(self.req(req, Some(lease)))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => return Ok(false),
            Err(s) => return Err(grpc("content info")(s)),
        }
        let add = AddResourceRequest {
            id: lease.to_string(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".into(),
            }),
        };
        LeasesClient::new(self.channel.clone())
            .add_resource(self.req(add, None))
            .await
            .map_err(grpc("add content to lease"))?;
        Ok(true)
    }

    /// Streams a blob from a registry into the content store as it downloads; containerd
    /// checks the digest at commit and the reader checks it too, so a blob that does not
    /// match is never committed.
    pub(super) async fn write_blob_from(
        &self,
        reader: &mut crate::registry::BlobReader,
        digest: &str,
        size: i64,
        lease: &str,
    ) -> Result<std::result::Result<(), crate::registry::Error>> {
        use futures::SinkExt;
        let (mut tx, rx) = futures::channel::mpsc::channel::<WriteContentRequest>(4);
        let ingest_ref = format!("kybern-pull-{digest}-{}", unique_suffix());
        let feed = async {
            let mut offset = 0i64;
            let result = loop {
                let chunk = match reader.next_chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                let len = chunk.len() as i64;
                let piece = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: ingest_ref.clone(),
                    total: size,
                    expected: digest.to_string(),
                    offset,
                    data: chunk.to_vec(),
                    labels: HashMap::new(),
                };
                offset += len;
                if tx.send(piece).await.is_err() {
                    // containerd ended the call; its answer says why.
                    return Ok(());
                }
            };
            if result.is_ok() {
                let commit = WriteContentRequest {
                    action: WriteAction::Commit as i32,
                    r#ref: ingest_ref.clone(),
                    total: size,
                    expected: digest.to_string(),
                    offset,
                    data: Vec::new(),
                    labels: HashMap::new(),
                };
                let _ = tx.send(commit).await;
            }
            // Dropping the sender ends the call; without a commit nothing is stored.
            drop(tx);
            result
        };
        let write = async {
            let mut content = ContentClient::new(self.channel.clone());
            let mut stream = content.write(self.req(rx, Some(lease))).await?.into_inner();
            while stream.message().await?.is_some() {}
            Ok::<_, containerd_client::tonic::Status>(())
        };
        let (fed, written) = tokio::join!(feed, write);
        match written {
            Ok(()) => {}
            // Someone else committed the same blob meanwhile: the content is there.
            Err(s) if s.code() == Code::AlreadyExists => return Ok(Ok(())),
            Err(s) => {
                // A download that failed explains the write that ended early.
                if let Err(e) = fed {
                    return Ok(Err(e));
                }
                return Err(grpc("write content")(s));
            }
        }
        if let Err(e) = fed {
            // Drop the partial download rather than leave it for containerd to expire.
            let abort = AbortRequest {
                r#ref: ingest_ref.clone(),
            };
            if let Err(s) = ContentClient::new(self.channel.clone())
                .abort(self.req(abort, Some(lease)))
                .await
            {
                tracing::debug!(%digest, status = %s, "aborting the failed download");
            }
            return Ok(Err(e));
        }
        if !self.has_content(digest, lease).await? {
            return Err(Error::Pull(format!("blob {digest} was not stored")));
        }
        Ok(Ok(()))
    }
}
