//! kybern's integration and end-to-end tests live under `tests/`: `tests/api` drives the
//! in-process apiserver with kube-rs, `tests/kubectl` drives the real `kybern` binary
//! with the real kubectl. The harnesses they share are in the `kybern-testkit` crate (`testkit/`).
