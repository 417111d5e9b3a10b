//! Images from registries: reference parsing and normalization ([`reference`]), a client of
//! the OCI distribution API v2 with anonymous, basic and bearer-token auth ([`client`]),
//! manifest and manifest-list handling ([`manifest`]), fetching a whole image with every
//! blob verified ([`fetch`]), pushing ([`push`], for tests and the CLI), and credentials
//! from imagePullSecrets ([`credentials`]). Writing what was fetched into containerd is the
//! runtime's part (`runtime::containerd::pull`).

pub mod auth;
pub mod client;
pub mod credentials;
pub mod fetch;
pub mod manifest;
pub mod push;
pub mod reference;

pub use client::{Client, RegistryConfig};
pub use credentials::credentials_for;
pub use fetch::{fetch_image, resolve, BlobReader, FetchedImage, Resolved};
pub use reference::{normalize, Reference};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    /// The registry answered with a status the operation cannot go on with (401 when the
    /// credentials are wrong or missing, 403, 5xx...).
    #[error("unexpected status from {method} request to {url}: {status}{message}")]
    Status {
        method: String,
        url: String,
        status: http::StatusCode,
        /// The registry's own error text, `: server message: CODE: text`, or empty.
        message: String,
    },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("failed to authorize: {0}")]
    Auth(String),
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("digest mismatch for {digest}: got {actual}")]
    Digest { digest: String, actual: String },
    #[error("{0}")]
    Manifest(String),
    #[error("registry TLS configuration: {0}")]
    Tls(String),
    #[error("failed to resolve reference \"{reference}\": {source}")]
    Resolve {
        reference: String,
        source: Box<Error>,
    },
    #[error("failed to copy {digest}: {source}")]
    Copy { digest: String, source: Box<Error> },
}

impl Error {
    /// Whether the registry refused the credentials (or their absence).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status == http::StatusCode::UNAUTHORIZED,
            Error::Auth(_) => true,
            Error::Resolve { source, .. } | Error::Copy { source, .. } => source.is_unauthorized(),
            _ => false,
        }
    }

    /// Whether the image (tag, digest or blob) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Resolve { source, .. } | Error::Copy { source, .. } => source.is_not_found(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
