//! Running a command inside a running container: a containerd task exec.

use std::time::Duration;

use super::Containerd;
use crate::runtime::{Error, ExecOutput, Result};

pub(super) async fn exec(
    _rt: &Containerd,
    _id: &str,
    _args: &[String],
    _timeout: Duration,
) -> Result<ExecOutput> {
    Err(Error::Unsupported("exec in a container"))
}
