//! kybern's node agent. Today it holds only the simulator (`kybern agent --simulate N`):
//! nodes that register, heartbeat and report pods as running without running anything.
//! The real agent (containerd, netlink, nftables) is separate work.

pub mod simulate;
