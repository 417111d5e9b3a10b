//! Pulling images from registries into the content store, then unpacking them.

use super::Containerd;
use crate::runtime::{Error, ImageInfo, RegistryAuth, Result};

pub(super) async fn pull(
    _rt: &Containerd,
    _reference: &str,
    _auth: Option<&RegistryAuth>,
) -> Result<ImageInfo> {
    Err(Error::Unsupported("pulling from a registry"))
}
