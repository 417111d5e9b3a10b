//! Container images the agent builds itself: an OCI image layout packer (one uncompressed
//! layer, deterministic bytes) and the project's test images, busybox from Debian's
//! busybox-static and kybern's own test server.

pub mod docker_archive;
pub mod oci;
pub mod tar;
pub mod test_images;

pub use oci::{ImageConfig, OciImage};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tar: {0}")]
    Tar(String),
    #[error("OCI image layout: {0}")]
    Layout(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("building the test server: {0}")]
    Build(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `sha256:<hex>` of some bytes, the digest form OCI descriptors use.
pub fn sha256_digest(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_digest_matches_the_known_value_of_empty_input() {
        assert_eq!(
            super::sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
