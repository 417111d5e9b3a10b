//! Pushing to a registry (monolithic blob upload: POST then PUT; manifest PUT) and deleting
//! blobs: how tests fill their registry, and what `kybern` can use to publish the images it
//! builds.

use bytes::Bytes;
use http::{header, Method, StatusCode};

use super::client::Session;
use super::fetch::check;
use super::{Client, Reference, Result};
use crate::images::oci::Layout;
use crate::images::sha256_digest;
use crate::runtime::RegistryAuth;

impl Session {
    /// Uploads a blob unless the registry has it; returns its digest.
    pub async fn push_blob(&mut self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let url = self.url(&format!("blobs/{digest}"));
        let head = self.send(Method::HEAD, &url, &[], Bytes::new()).await?;
        if head.status == StatusCode::OK {
            return Ok(digest);
        }
        let start = self.url("blobs/uploads/");
        let reply = self.send(Method::POST, &start, &[], Bytes::new()).await?;
        check(&reply, &Method::POST, &[StatusCode::ACCEPTED], &start)?;
        let location = reply
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| super::Error::Manifest(format!("upload to {start} gave no Location")))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let headers = [(header::CONTENT_TYPE, "application/octet-stream".to_string())];
        let reply = self
            .send(Method::PUT, &put, &headers, Bytes::copy_from_slice(data))
            .await?;
        check(&reply, &Method::PUT, &[StatusCode::CREATED], &put)?;
        Ok(digest)
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest).
    pub async fn push_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> Result<()> {
        let url = self.url(&format!("manifests/{reference}"));
        let headers = [(header::CONTENT_TYPE, media_type.to_string())];
        let reply = self
            .send(Method::PUT, &url, &headers, Bytes::copy_from_slice(data))
            .await?;
        check(&reply, &Method::PUT, &[StatusCode::CREATED], &url)
    }
}

impl Session {
    /// Deletes a blob from the repository (registries that allow deletes only).
    pub async fn delete_blob(&mut self, digest: &str) -> Result<()> {
        let url = self.url(&format!("blobs/{digest}"));
        let reply = self.send(Method::DELETE, &url, &[], Bytes::new()).await?;
        check(&reply, &Method::DELETE, &[StatusCode::ACCEPTED], digest)
    }
}

/// Pushes the first image of an OCI layout (as [`crate::images::oci::read_layout`] reads
/// it) to `target` (`host:port/repo:tag`); returns the manifest digest.
pub async fn push_layout(
    client: &Client,
    layout: &Layout,
    target: &Reference,
    auth: Option<&RegistryAuth>,
) -> Result<String> {
    let image = layout
        .images
        .first()
        .ok_or_else(|| super::Error::Manifest("the layout holds no image".into()))?;
    let mut session = client.session(target, auth, true);
    for desc in image.layers.iter().chain([&image.config]) {
        session.push_blob(&layout.blobs[&desc.digest]).await?;
    }
    session
        .push_manifest(
            target.manifest_reference(),
            &image.manifest.media_type,
            &layout.blobs[&image.manifest.digest],
        )
        .await?;
    Ok(image.manifest.digest.clone())
}
