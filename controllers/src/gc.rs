pub fn run(_: std::sync::Arc<crate::Context>) -> crate::LoopFuture { Box::pin(async { Ok(()) }) }
