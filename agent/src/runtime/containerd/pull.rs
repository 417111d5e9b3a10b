//! Pulling images from registries: [`crate::registry`] fetches and verifies the manifest,
//! config and layers; they are written into the content store and unpacked under a lease
//! exactly as an import is (`import::store_image`). Failures read as containerd's and the
//! kubelet's do: `failed to pull and unpack image "<ref>": <why>`.

use super::Containerd;
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
    let fetched = registry::fetch_image(&client, &parsed, auth)
        .await
        .map_err(|e| failed(&e))?;
    let lease = rt.lease("pull").await?;
    let stored = rt.store_image(&fetched.image, &fetched.blobs, &lease).await;
    let dropped = rt.drop_lease(&lease).await;
    stored.map_err(|e| failed(&e))?;
    dropped?;
    tracing::info!(image = %fetched.image.name, digest = %fetched.image.manifest.digest, "pulled");
    Ok(ImageInfo {
        name: fetched.image.name.clone(),
        digest: fetched.image.manifest.digest.clone(),
        config: fetched.image.image_config.clone(),
    })
}
