//! [`Network`](super::Network) on the host's kernel through netlink.
