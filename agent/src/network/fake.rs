//! A recording [`Network`](super::Network) for unit tests.
