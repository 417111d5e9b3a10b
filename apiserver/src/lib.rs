//! kybern's API server: a generic, CRD-driven Kubernetes REST API over a revisioned store.

pub mod pki;
pub mod selectors;
pub mod storage;
pub mod table;
pub mod tls;
