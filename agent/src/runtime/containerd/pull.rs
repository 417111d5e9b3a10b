//! Pulling images from registries: [`crate::registry`] resolves the reference and fetches
//! each blob, verified against its digest; layers the content store already holds are not
//! downloaded again, the others stream into the content store as they arrive (never whole
//! in memory). The config and
//! manifest then go in and the image is unpacked and recorded under a lease exactly as an
//! import is (`import::finish_image`). Failures read as containerd's and the kubelet's do:
//! `failed to pull and unpack image "<ref>": <why>`.

use super::Containerd;
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
