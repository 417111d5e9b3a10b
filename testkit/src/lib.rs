//! kybern's test support, shared by every crate's integration and end-to-end tests: one
//! in-process cluster builder ([`Cluster::builder`]: the API server, the control loops a
//! test names, simulated nodes or a stand-in kubelet, either storage backend), the API
//! server alone ([`InProcess`]), the real `kybern` binary ([`Binary`]), a throwaway etcd
//! ([`Etcd`]), the real kubectl ([`Kubectl`]), a local image registry ([`registry`]), the privileged tests' network
//! numbers and two-node network ([`netlab`]), typed fixtures ([`fixtures`]) and waiting
//! for a state ([`eventually`]). Every process is killed by pid and every temp dir removed on drop,
//! also when a test panics. Nothing here is compiled into the product.

mod apiserver;
mod cluster;
mod etcd;
pub mod fixtures;
pub mod http;
mod kubectl;
pub mod netlab;
mod process;
pub mod registry;
pub mod secrets;
pub mod users;
mod wait;
pub mod webhook;

pub use crate::apiserver::{client_from_kubeconfig, client_without_retries, Backend, InProcess};
pub use cluster::{mark_ready, Cluster, ClusterBuilder};
pub use etcd::Etcd;
pub use kubectl::Kubectl;
pub use process::{free_port, kybern_binary, Binary, ChildGuard};
pub use users::User;
pub use wait::{eventually, eventually_some, eventually_within, WAIT};
