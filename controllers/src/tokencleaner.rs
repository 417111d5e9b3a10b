//! The token cleaner (upstream's tokencleaner controller): a bootstrap token Secret
//! (`kube-system`, type `bootstrap.kubernetes.io/token`) is deleted once its
//! `expiration` has passed, and looked at again when it will have.

use std::sync::Arc;
use std::time::Duration;

use apiserver::api::pipeline::bootstrap_token as bt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::info;

use crate::{Context, LoopFuture};

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), bt::NAMESPACE);
        crate::runtime::own_watch::run(
            api.clone(),
            watcher::Config::default().fields(&format!("type={}", bt::SECRET_TYPE)),
            "bootstrap token secret",
            reconcile,
            Arc::new(api),
        )
        .await;
        Ok(())
    })
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

async fn reconcile(secret: Arc<Secret>, api: Arc<Api<Secret>>) -> Result<Action, Error> {
    let value = serde_json::to_value(&*secret).unwrap_or_default();
    let now = apiserver::object::unix_now();
    match next_step(&value, now) {
        Step::Keep => Ok(Action::await_change()),
        Step::LookAgainIn(wait) => Ok(Action::requeue(wait)),
        Step::Delete => {
            let name = secret.name_any();
            info!(secret = %name, "deleting an expired bootstrap token");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    Ok(Action::await_change())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Keep,
    LookAgainIn(Duration),
    Delete,
}

/// What to do with a token Secret at `now` (unix seconds).
fn next_step(secret: &serde_json::Value, now: i64) -> Step {
    if secret["type"].as_str() != Some(bt::SECRET_TYPE)
        || apiserver::object::meta_str(secret, "deletionTimestamp").is_some()
    {
        return Step::Keep;
    }
    if bt::expired(secret, now) {
        return Step::Delete;
    }
    match bt::data(secret, bt::EXPIRATION).and_then(|t| apiserver::object::parse_rfc3339(&t)) {
        // One second past the expiration, so the next look finds it expired.
        Some(at) => Step::LookAgainIn(Duration::from_secs(
            u64::try_from(at - now + 1).unwrap_or(1),
        )),
        None => Step::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_are_deleted_and_live_ones_looked_at_when_they_expire() {
        let token = bt::Token::parse("abcdef.0123456789abcdef").unwrap();
        let with = |expires| {
            bt::secret(
                &token,
                &bt::TokenOptions {
                    expires,
                    ..Default::default()
                },
            )
        };
        let cases = [
            ("expired", with(Some(900)), Step::Delete),
            ("expires at now", with(Some(1_000)), Step::Delete),
            (
                "expires later",
                with(Some(1_060)),
                Step::LookAgainIn(Duration::from_secs(61)),
            ),
            ("never expires", with(None), Step::Keep),
        ];
        for (name, secret, want) in cases {
            assert_eq!(next_step(&secret, 1_000), want, "{name}");
        }
    }
}
