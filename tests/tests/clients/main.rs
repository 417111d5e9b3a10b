//! Real clients other than kubectl, Helm and kube-rs, unchanged, against the real
//! `kybern server` binary: the official Python client and lightkube, for the shapes their
//! typed APIs check (typed delete responses, Service status, error bodies compared as
//! strings).

mod python;
mod venv;
