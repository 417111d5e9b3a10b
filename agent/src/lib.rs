//! kybern's node agent. Today it holds the simulator (`kybern agent --simulate N`: nodes that
//! register, heartbeat and report pods as running without running anything) and the
//! foundations of the real agent: the container runtime on containerd ([`runtime`]) and the
//! images it builds itself ([`images`]).

pub mod dns;
pub mod images;
pub mod kubelet;
pub mod local_path;
pub mod logs;
pub mod network;
pub mod node;
pub mod nodeapi;
pub mod pods;
pub mod probe;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod services;
pub mod simulate;
pub mod stats;
pub mod stream;
pub mod volumes;
