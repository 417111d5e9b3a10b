//! placeholder
use std::sync::Arc;
pub fn run(_ctx: Arc<crate::Context>) -> crate::LoopFuture { Box::pin(async { anyhow::bail!("todo") }) }
