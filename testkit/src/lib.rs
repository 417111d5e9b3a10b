//! kybern's test support, shared by every crate's integration and end-to-end tests: the
//! API server in-process ([`InProcess`]), the real `kybern` binary ([`Binary`]), a
//! throwaway etcd ([`Etcd`]), the real kubectl ([`Kubectl`]), and waiting for a state
//! ([`eventually`]). Every process is killed by pid and every temp dir removed on drop,
//! also when a test panics. Nothing here is compiled into the product.

mod apiserver;
mod etcd;
mod kubectl;
mod process;
mod wait;

pub use crate::apiserver::{client_from_kubeconfig, client_without_retries, Backend, InProcess};
pub use etcd::Etcd;
pub use kubectl::Kubectl;
pub use process::{free_port, kybern_binary, Binary, ChildGuard};
pub use wait::{eventually, eventually_within, WAIT};
