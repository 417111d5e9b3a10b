//! Fetching one image for this node's platform: resolve the reference to a manifest
//! (through a manifest list when there is one), then the config and every layer, each
//! checked against its digest, ready to be written into the content store.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{header, Method, StatusCode};

use super::client::{read_body, server_message, Reply, Session};
use super::manifest::{self, Manifest};
use super::{Client, Error, Reference, Result};
use crate::images::oci::{parse_config, Descriptor, ImageConfig, LayoutImage};
use crate::images::sha256_digest;
use crate::runtime::RegistryAuth;

/// How long a blob download may stall before it is given up.
const CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Manifests larger than this are refused (registries cap them at 4 MiB too).
const MAX_MANIFEST: usize = 4 << 20;

/// An image as fetched: what an importer records, and every blob by digest.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    /// `name` is the normalized reference; `manifest` the platform manifest.
    pub image: LayoutImage,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

/// A reference resolved to its linux/amd64 image manifest, with the session that can fetch
/// its blobs.
pub struct Resolved {
    /// The normalized reference.
    pub name: String,
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    session: Session,
}

impl Resolved {
    /// A blob of this image, verified; errors are [`Error::Copy`].
    pub async fn fetch_blob(&mut self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.session.get_blob(desc).await.map_err(|e| Error::Copy {
            digest: desc.digest.clone(),
            source: Box::new(e),
        })
    }

    /// Opens a blob of this image for reading piece by piece; errors are [`Error::Copy`].
    pub async fn open_blob(&mut self, desc: &Descriptor) -> Result<BlobReader> {
        let copy = |e: Error| Error::Copy {
            digest: desc.digest.clone(),
            source: Box::new(e),
        };
        let url = self.session.url(&format!("blobs/{}", desc.digest));
        let (resp, url) = self
            .session
            .send_unread(Method::GET, &url, &[], Bytes::new())
            .await
            .map_err(copy)?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_body(resp, &Method::GET, &url).await.map_err(copy)?;
            let reply = Reply {
                status,
                headers,
                body,
                url,
            };
            return Err(copy(status_error(&reply, &Method::GET, &desc.digest)));
        }
        Ok(BlobReader {
            body: resp.into_body(),
            hasher: ring::digest::Context::new(&ring::digest::SHA256),
            read: 0,
            desc: desc.clone(),
            url,
        })
    }

    /// The config blob: the container defaults and the layers' diff IDs (as many as there
    /// are layers).
    pub async fn fetch_config(&mut self) -> Result<(Vec<u8>, ImageConfig, Vec<String>)> {
        let config = self.config.clone();
        let bytes = self.fetch_blob(&config).await?;
        let (image_config, diff_ids) = parse_config(&bytes).map_err(|e| Error::Copy {
            digest: config.digest.clone(),
            source: Box::new(Error::Manifest(e.to_string())),
        })?;
        if diff_ids.len() != self.layers.len() {
            return Err(Error::Manifest(format!(
                "{}: the manifest has {} layers but the config {} diff IDs",
                self.name,
                self.layers.len(),
                diff_ids.len()
            )));
        }
        Ok((bytes, image_config, diff_ids))
    }
}

/// Resolves `reference` to its image manifest, picking linux/amd64 from a manifest list;
/// errors are [`Error::Resolve`].
pub async fn resolve(
    client: &Client,
    reference: &Reference,
    auth: Option<&RegistryAuth>,
) -> Result<Resolved> {
    let name = reference.to_string();
    let resolve = |e: Error| Error::Resolve {
        reference: name.clone(),
        source: Box::new(e),
    };
    let mut session = client.session(reference, auth, false);
    let (mut desc, mut body, mut parsed) = session
        .get_manifest(
            reference.manifest_reference(),
            reference.digest.as_deref(),
            &name,
        )
        .await
        .map_err(resolve)?;
    if let Manifest::Index { manifests } = &parsed {
        let entry = manifest::pick_platform(manifests, manifest::OS, manifest::ARCHITECTURE)
            .ok_or_else(|| {
                resolve(Error::NotFound(format!(
                    "no match for platform {}/{} in manifest {}",
                    manifest::OS,
                    manifest::ARCHITECTURE,
                    desc.digest
                )))
            })?;
        let digest = entry.descriptor.digest.clone();
        (desc, body, parsed) = session
            .get_manifest(
                &digest,
                Some(&digest),
                &format!("{}@{digest}", reference.name()),
            )
            .await
            .map_err(resolve)?;
    }
    let Manifest::Image { config, layers } = parsed else {
        return Err(resolve(Error::Manifest(format!(
            "manifest {} for linux/amd64 is itself an index",
            desc.digest
        ))));
    };
    Ok(Resolved {
        name,
        manifest: desc,
        manifest_bytes: body,
        config,
        layers,
        session,
    })
}

/// Fetches a whole image into memory (see [`resolve`] to fetch blob by blob).
pub async fn fetch_image(
    client: &Client,
    reference: &Reference,
    auth: Option<&RegistryAuth>,
) -> Result<FetchedImage> {
    let mut resolved = resolve(client, reference, auth).await?;
    let (config_bytes, image_config, diff_ids) = resolved.fetch_config().await?;
    let mut blobs = BTreeMap::new();
    blobs.insert(resolved.config.digest.clone(), config_bytes);
    for layer in resolved.layers.clone() {
        if !blobs.contains_key(&layer.digest) {
            let data = resolved.fetch_blob(&layer).await?;
            blobs.insert(layer.digest.clone(), data);
        }
    }
    blobs.insert(resolved.manifest.digest.clone(), resolved.manifest_bytes);
    Ok(FetchedImage {
        image: LayoutImage {
            name: resolved.name,
            manifest: resolved.manifest,
            config: resolved.config,
            layers: resolved.layers,
            diff_ids,
            image_config,
        },
        blobs,
    })
}

/// A blob being downloaded: pieces as they arrive, its digest and size checked at the end.
pub struct BlobReader {
    body: hyper::body::Incoming,
    hasher: ring::digest::Context,
    read: u64,
    desc: Descriptor,
    url: String,
}

impl BlobReader {
    /// The next piece, or `None` at the end once the whole blob matched its descriptor.
    /// Errors are [`Error::Copy`].
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        use http_body_util::BodyExt;
        let copy = |e: Error| Error::Copy {
            digest: self.desc.digest.clone(),
            source: Box::new(e),
        };
        loop {
            let frame = tokio::time::timeout(CHUNK_TIMEOUT, self.body.frame()).await;
            let frame = match frame {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    return Err(copy(Error::Transport {
                        method: "GET".into(),
                        url: self.url.clone(),
                        message: format!("reading the body: {e}"),
                    }))
                }
                Err(_) => {
                    return Err(copy(Error::Transport {
                        method: "GET".into(),
                        url: self.url.clone(),
                        message: format!("no data for {CHUNK_TIMEOUT:?}"),
                    }))
                }
                Ok(None) => {
                    let hex: String = self
                        .hasher
                        .clone()
                        .finish()
                        .as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    let actual = format!("sha256:{hex}");
                    if actual != self.desc.digest {
                        return Err(copy(Error::Digest {
                            digest: self.desc.digest.clone(),
                            actual,
                        }));
                    }
                    if self.desc.size >= 0 && self.read != self.desc.size as u64 {
                        return Err(copy(Error::Digest {
                            digest: self.desc.digest.clone(),
                            actual: format!(
                                "{} bytes where {} were expected",
                                self.read, self.desc.size
                            ),
                        }));
                    }
                    return Ok(None);
                }
            };
            if let Ok(data) = frame.into_data() {
                self.read += data.len() as u64;
                if self.desc.size >= 0 && self.read > self.desc.size as u64 {
                    return Err(copy(Error::Digest {
                        digest: self.desc.digest.clone(),
                        actual: format!("more than the {} bytes expected", self.desc.size),
                    }));
                }
                self.hasher.update(&data);
                return Ok(Some(data));
            }
        }
    }
}

/// Maps a non-success reply to an error (404 as not found, naming `what`).
pub(super) fn check(reply: &Reply, method: &Method, ok: &[StatusCode], what: &str) -> Result<()> {
    if ok.contains(&reply.status) {
        return Ok(());
    }
    Err(status_error(reply, method, what))
}

fn status_error(reply: &Reply, method: &Method, what: &str) -> Error {
    if reply.status == StatusCode::NOT_FOUND {
        return Error::NotFound(what.to_string());
    }
    Error::Status {
        method: method.to_string(),
        url: reply.url.clone(),
        status: reply.status,
        message: server_message(&reply.body),
    }
}

fn verify(data: &[u8], desc_digest: &str, size: Option<i64>) -> Result<()> {
    let actual = sha256_digest(data);
    if actual != desc_digest {
        return Err(Error::Digest {
            digest: desc_digest.to_string(),
            actual,
        });
    }
    if let Some(size) = size.filter(|&s| s >= 0 && s as usize != data.len()) {
        return Err(Error::Digest {
            digest: desc_digest.to_string(),
            actual: format!("{} bytes where {size} were expected", data.len()),
        });
    }
    Ok(())
}

impl Session {
    /// The manifest at `reference` (tag or digest): its descriptor, bytes and parsed form.
    /// When `digest` is given the bytes must hash to it; otherwise a `Docker-Content-Digest`
    /// header, if sent, must match. `what` names the image in a not-found error.
    pub async fn get_manifest(
        &mut self,
        reference: &str,
        digest: Option<&str>,
        what: &str,
    ) -> Result<(Descriptor, Vec<u8>, Manifest)> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = [(header::ACCEPT, manifest::ACCEPT.to_string())];
        let reply = self.send(Method::GET, &url, &accept, Bytes::new()).await?;
        check(&reply, &Method::GET, &[StatusCode::OK], what)?;
        if reply.body.len() > MAX_MANIFEST {
            return Err(Error::Manifest(format!(
                "manifest of {what} is larger than 4 MiB"
            )));
        }
        let header_digest = reply
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"));
        let expected = digest.or(header_digest);
        let actual = sha256_digest(&reply.body);
        if let Some(expected) = expected {
            verify(&reply.body, expected, None)?;
        }
        let content_type = reply
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (media_type, parsed) = manifest::parse(content_type, &reply.body)?;
        let desc = Descriptor {
            media_type,
            digest: actual,
            size: reply.body.len() as i64,
            annotations: Default::default(),
        };
        Ok((desc, reply.body.to_vec(), parsed))
    }

    /// A blob, checked against the descriptor's digest and size.
    pub async fn get_blob(&mut self, desc: &Descriptor) -> Result<Vec<u8>> {
        let url = self.url(&format!("blobs/{}", desc.digest));
        let reply = self.send(Method::GET, &url, &[], Bytes::new()).await?;
        check(&reply, &Method::GET, &[StatusCode::OK], &desc.digest)?;
        verify(&reply.body, &desc.digest, Some(desc.size))?;
        Ok(reply.body.to_vec())
    }
}
