//! The namespace controller: when a Namespace is being deleted, delete everything in
//! it (every namespaced resource discovery lists), report what remains in its status
//! conditions, and once nothing remains remove the `kubernetes` finalizer through
//! `namespaces/NAME/finalize`, after which the apiserver deletes the namespace
//! (upstream's `pkg/controller/namespace/deletion`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use crate::{Context, LoopFuture};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";
/// How soon to look again while content remains (pods terminating, finalizers).
const RECHECK: Duration = Duration::from_secs(2);
/// How long after its deletion a namespace's content is left alone, as upstream's
/// `namespaceDeletionGracePeriod`: `kubectl delete -f` of a manifest that holds the
/// namespace deletes the namespace first and then each object in it, and those
/// deletes must find their objects (and other apiservers must see the deletion).
pub const DELETION_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovering namespaced resources: {0}")]
    Discovery(#[source] kube::Error),
    #[error("updating namespace {0} status: {1}")]
    Status(String, #[source] kube::Error),
    #[error("finalizing namespace {0}: {1}")]
    Finalize(String, #[source] kube::Error),
}

impl crate::runtime::retry::ReconcileError for Error {
    fn retry_after(&self) -> Option<Duration> {
        // A namespace is checked again on a short cycle anyway.
        Some(RECHECK)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let namespaces = ctx.informers.all::<Namespace>();
        namespaces.synced().await;
        Controller::for_shared_stream(namespaces.touched(), namespaces.store())
            .run(
                crate::runtime::metrics::metered(reconcile),
                crate::runtime::retry::error_policy,
                ctx,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "namespace reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

/// What is left of one resource in a terminating namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Remaining {
    /// `plural.group` as upstream writes it (`configmaps.` for the core group).
    pub resource: String,
    pub count: usize,
    /// Finalizers on the remaining objects, with how many objects carry each.
    pub finalizers: Vec<(String, usize)>,
}

#[tracing::instrument(skip_all, fields(key = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if !needs_cleanup(&ns) {
        return Ok(Action::await_change());
    }
    if let Some(wait) = grace_left(&ns, Timestamp::now()) {
        return Ok(Action::requeue(wait));
    }
    let name = ns.name_any();
    let resources = crate::runtime::discovery::namespaced_deletable(ctx.client.clone())
        .await
        .map_err(Error::Discovery)?;
    let mut failures = Vec::new();
    let mut remaining = Vec::new();
    for ar in &resources {
        match clean(ctx.client.clone(), &name, ar).await {
            Ok(Some(left)) => remaining.push(left),
            Ok(None) => {}
            Err(e) => failures.push(format!("{}: {e}", resource_key(ar))),
        }
    }
    let conditions = conditions(
        &failures,
        &remaining,
        previous_conditions(&ns),
        Timestamp::now(),
    );
    if previous_conditions(&ns) != conditions.as_slice() {
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        Api::<Namespace>::all(ctx.client.clone())
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::Status(name.clone(), e))?;
    }
    if !failures.is_empty() || !remaining.is_empty() {
        tracing::info!(
            remaining = remaining.len(),
            failures = failures.len(),
            "namespace content remains"
        );
        return Ok(Action::requeue(RECHECK));
    }
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(without_kubernetes(
            spec.finalizers.as_deref().unwrap_or_default(),
        ));
    }
    Api::<Namespace>::all(ctx.client.clone())
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
        .map_err(|e| Error::Finalize(name.clone(), e))?;
    tracing::info!("namespace content removed; finalized");
    Ok(Action::await_change())
}

/// Deletes every object of one resource in the namespace and says what is left.
async fn clean(
    client: kube::Client,
    ns: &str,
    ar: &ApiResource,
) -> Result<Option<Remaining>, kube::Error> {
    let api = Api::<DynamicObject>::namespaced_with(client, ns, ar);
    let left = api.list(&ListParams::default()).await?;
    if left.items.is_empty() {
        return Ok(None);
    }
    api.delete_collection(&DeleteParams::background(), &ListParams::default())
        .await?;
    let left = api.list(&ListParams::default()).await?;
    Ok(summarize(
        &resource_key(ar),
        left.items.iter().map(|o| o.finalizers()),
    ))
}

fn resource_key(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

/// Whether a namespace is terminating and still carries our finalizer.
pub fn needs_cleanup(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// How much of [`DELETION_GRACE`] is left since the namespace's deletion, if any.
pub fn grace_left(ns: &Namespace, now: Timestamp) -> Option<Duration> {
    let deleted = ns.metadata.deletion_timestamp.as_ref()?.0;
    let elapsed = Duration::try_from(now.duration_since(deleted)).unwrap_or_default();
    DELETION_GRACE
        .checked_sub(elapsed)
        .filter(|left| !left.is_zero())
}

pub fn without_kubernetes(finalizers: &[String]) -> Vec<String> {
    finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect()
}

/// What is left of one resource, given the finalizers of each remaining object.
pub fn summarize<'a>(
    resource: &str,
    objects: impl Iterator<Item = &'a [String]>,
) -> Option<Remaining> {
    let mut count = 0;
    let mut finalizers: Vec<(String, usize)> = Vec::new();
    for fins in objects {
        count += 1;
        for f in fins {
            match finalizers.iter_mut().find(|(name, _)| name == f) {
                Some((_, n)) => *n += 1,
                None => finalizers.push((f.clone(), 1)),
            }
        }
    }
    (count > 0).then(|| Remaining {
        resource: resource.to_string(),
        count,
        finalizers,
    })
}

fn previous_conditions(ns: &Namespace) -> &[NamespaceCondition] {
    ns.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// The deletion conditions upstream sets on a terminating namespace, each True while
/// its problem lasts. lastTransitionTime moves only when a condition's status does.
pub fn conditions(
    failures: &[String],
    remaining: &[Remaining],
    previous: &[NamespaceCondition],
    now: Timestamp,
) -> Vec<NamespaceCondition> {
    let mut finalizers: Vec<String> = Vec::new();
    for r in remaining {
        for (f, n) in &r.finalizers {
            finalizers.push(format!("{f} in {n} resource instances"));
        }
    }
    finalizers.sort();
    let content: Vec<String> = remaining
        .iter()
        .map(|r| format!("{} has {} resource instances", r.resource, r.count))
        .collect();
    let table = [
        (
            "NamespaceDeletionDiscoveryFailure",
            None,
            ("DiscoveryFailed", "ResourcesDiscovered"),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            ("GroupVersionParsingFailed", "ParsedGroupVersions"),
        ),
        (
            "NamespaceDeletionContentFailure",
            (!failures.is_empty()).then(|| {
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    failures.len(),
                    failures.join(", ")
                )
            }),
            ("ContentDeletionFailed", "ContentDeleted"),
        ),
        (
            "NamespaceContentRemaining",
            (!content.is_empty())
                .then(|| format!("Some resources are remaining: {}", content.join(", "))),
            ("SomeResourcesRemain", "ContentRemoved"),
        ),
        (
            "NamespaceFinalizersRemaining",
            (!finalizers.is_empty()).then(|| {
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizers.join(", ")
                )
            }),
            ("SomeFinalizersRemain", "ContentHasNoFinalizers"),
        ),
    ];
    table
        .into_iter()
        .map(|(type_, problem, (bad, good))| {
            let status = if problem.is_some() { "True" } else { "False" };
            let prev = previous.iter().find(|c| c.type_ == type_);
            let last_transition_time = match prev {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => Some(Time(now)),
            };
            NamespaceCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(if problem.is_some() { bad } else { good }.to_string()),
                message: Some(problem.unwrap_or_else(|| match type_ {
                    "NamespaceDeletionDiscoveryFailure" => {
                        "All resources successfully discovered".into()
                    }
                    "NamespaceDeletionGroupVersionParsingFailure" => {
                        "All legacy kube types successfully parsed".into()
                    }
                    "NamespaceDeletionContentFailure" => {
                        "All content successfully deleted, may be waiting on finalization".into()
                    }
                    "NamespaceContentRemaining" => "All content successfully removed".into(),
                    _ => "All content-preserving finalizers finished".into(),
                })),
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn namespace(deleting: bool, finalizers: &[&str]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("n".into()),
                deletion_timestamp: deleting.then(|| Time(at(0))),
                ..Default::default()
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(finalizers.iter().map(|s| s.to_string()).collect()),
            }),
            status: None,
        }
    }

    fn condition<'a>(cs: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
        cs.iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t} condition"))
    }

    #[test]
    fn only_terminating_namespaces_with_our_finalizer_are_cleaned() {
        let cases = [
            ("active", namespace(false, &["kubernetes"]), false),
            ("terminating", namespace(true, &["kubernetes"]), true),
            ("terminating_already_finalized", namespace(true, &[]), false),
            (
                "terminating_with_another_finalizer_only",
                namespace(true, &["example.com/x"]),
                false,
            ),
        ];
        for (name, ns, want) in cases {
            assert_eq!(needs_cleanup(&ns), want, "{name}");
        }
    }

    #[test]
    fn content_is_left_alone_for_five_seconds_after_the_namespace_is_deleted() {
        let ns = namespace(true, &["kubernetes"]);
        let cases = [
            ("just_deleted", at(0), Some(Duration::from_secs(5))),
            ("two_seconds_later", at(2), Some(Duration::from_secs(3))),
            ("grace_over", at(5), None),
            ("long_ago", at(600), None),
        ];
        for (name, now, want) in cases {
            assert_eq!(grace_left(&ns, now), want, "{name}");
        }
    }

    #[test]
    fn finalizing_removes_only_the_kubernetes_finalizer() {
        let f = vec!["example.com/x".to_string(), "kubernetes".to_string()];
        assert_eq!(without_kubernetes(&f), vec!["example.com/x".to_string()]);
    }

    #[test]
    fn remaining_objects_are_counted_with_their_finalizers() {
        let objs: Vec<Vec<String>> = vec![
            vec!["foregroundDeletion".into()],
            vec![],
            vec!["foregroundDeletion".into()],
        ];
        let left = summarize("configmaps.", objs.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(left.count, 3);
        assert_eq!(left.finalizers, vec![("foregroundDeletion".to_string(), 2)]);
        assert_eq!(summarize("pods.", std::iter::empty()), None);
    }

    #[test]
    fn remaining_content_sets_content_remaining_true_with_what_remains() {
        let left = Remaining {
            resource: "configmaps.".into(),
            count: 2,
            finalizers: vec![("example.com/x".into(), 1)],
        };
        let cs = conditions(&[], &[left], &[], at(5));
        let remaining = condition(&cs, "NamespaceContentRemaining");
        assert_eq!(
            (remaining.status.as_str(), remaining.reason.as_deref()),
            ("True", Some("SomeResourcesRemain"))
        );
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let fins = condition(&cs, "NamespaceFinalizersRemaining");
        assert_eq!(fins.status, "True");
        assert!(fins
            .message
            .as_deref()
            .unwrap()
            .contains("example.com/x in 1 resource instances"));
        assert_eq!(
            condition(&cs, "NamespaceDeletionContentFailure").status,
            "False"
        );
    }

    #[test]
    fn failed_deletions_set_content_failure_true() {
        let cs = conditions(&["pods.: boom".into()], &[], &[], at(0));
        let failure = condition(&cs, "NamespaceDeletionContentFailure");
        assert_eq!(failure.status, "True");
        assert!(failure.message.as_deref().unwrap().contains("pods.: boom"));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let left = Remaining {
            resource: "configmaps.".into(),
            count: 1,
            finalizers: vec![],
        };
        let first = conditions(&[], std::slice::from_ref(&left), &[], at(0));
        let again = conditions(&[], std::slice::from_ref(&left), &first, at(10));
        assert_eq!(
            condition(&again, "NamespaceContentRemaining").last_transition_time,
            Some(Time(at(0)))
        );
        let cleared = conditions(&[], &[], &again, at(20));
        assert_eq!(
            condition(&cleared, "NamespaceContentRemaining").last_transition_time,
            Some(Time(at(20)))
        );
        assert_eq!(
            condition(&cleared, "NamespaceDeletionContentFailure").last_transition_time,
            Some(Time(at(0)))
        );
    }
}
