//! One error policy for every control loop: how soon a failed reconcile runs again and
//! how the failure is logged, decided by the kind of error, never by its message.
//!
//! A write that lost a race with another writer (the API's 409 Conflict) is retried
//! after [`CONFLICT_RETRY`], from caches that by then hold the newer object, and only
//! logged at debug level: it is how optimistic concurrency works, not a fault. Anything
//! else is logged as a warning with the object's kind and key and retried after the
//! delay the error names itself ([`ReconcileError::retry_after`]) or [`ERROR_RETRY`].

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::ResourceExt;

/// How soon a reconcile that lost a write race runs again.
pub const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// How soon any other failed reconcile runs again.
pub const ERROR_RETRY: Duration = Duration::from_secs(5);

/// What a loop's error type tells the shared error policy.
pub trait ReconcileError: std::error::Error + 'static {
    /// A delay this error calls for itself (a hash collision, an exhausted range), if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The API error somewhere in `error`'s chain of sources, if any.
pub fn api_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a kube::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(api) = e.downcast_ref::<kube::Error>() {
            return Some(api);
        }
        next = e.source();
    }
    None
}

/// Whether `error` is a write that lost a race (409 Conflict). AlreadyExists is a 409
/// too, but retrying it soon only spins until the cache shows the object.
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(api_error(error), Some(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict")
}

/// The error policy every loop hands its `Controller`.
pub fn error_policy<K, E, S>(obj: Arc<K>, error: &E, _: Arc<S>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
    E: ReconcileError,
{
    let kind = K::kind(&());
    let key = match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    let delay = match error.retry_after() {
        None if is_conflict(error) => {
            tracing::debug!(%kind, %key, %error, "reconcile lost a write race; retrying");
            return Action::requeue(CONFLICT_RETRY);
        }
        own => own.unwrap_or(ERROR_RETRY),
    };
    tracing::warn!(%kind, %key, %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[derive(Debug, thiserror::Error)]
    enum Error {
        #[error("writing {name}: {source}")]
        Write { name: String, source: kube::Error },
        #[error("nothing left in the range")]
        Exhausted,
        #[error("no namespace")]
        NoNamespace,
    }

    impl ReconcileError for Error {
        fn retry_after(&self) -> Option<Duration> {
            matches!(self, Error::Exhausted).then_some(Duration::from_secs(30))
        }
    }

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn each_kind_of_failure_gets_its_own_delay() {
        let obj = Arc::new(ConfigMap::default());
        let write = |code, reason: &str| Error::Write {
            name: "x".into(),
            source: api(code, reason),
        };
        let cases = [
            (
                "lost race",
                write(409, "Conflict"),
                Action::requeue(CONFLICT_RETRY),
            ),
            (
                "already exists",
                write(409, "AlreadyExists"),
                Action::requeue(ERROR_RETRY),
            ),
            (
                "server error",
                write(500, "InternalError"),
                Action::requeue(ERROR_RETRY),
            ),
            (
                "no API error",
                Error::NoNamespace,
                Action::requeue(ERROR_RETRY),
            ),
            (
                "own delay",
                Error::Exhausted,
                Action::requeue(Duration::from_secs(30)),
            ),
        ];
        for (name, error, want) in cases {
            assert_eq!(
                error_policy(obj.clone(), &error, Arc::new(())),
                want,
                "{name}"
            );
        }
    }
}
