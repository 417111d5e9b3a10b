//! kybern's API server: a generic, CRD-driven Kubernetes REST API over a revisioned store.

// `ApiError` is a `metav1.Status` with its causes and target, past clippy's 128-byte
// threshold by design; errors are the slow path, and boxing them would only add an
// allocation and a dereference to every handler.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod apply;
pub(crate) mod cel;
pub mod conversion;
pub mod json;
pub mod object;
pub mod pki;
pub mod prometheus;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod request_metrics;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod smp;
pub mod status;
pub mod storage;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watchcache;
pub mod yaml;
