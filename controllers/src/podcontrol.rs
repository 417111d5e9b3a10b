//! What the workload controllers share about pods and owners: label-selector matching,
//! controller owner references, pod readiness and availability, and the few API writes
//! (create from a template, delete, adopt, release) every workload controller makes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::shared::labels as label_selector;

/// Whether a controller with `selector` selects a child with `labels`: the one matcher
/// ([`label_selector::selector_matches`]), except that an empty selector selects nothing here.
/// Upstream's listers say the same ("If a ReplicaSet with a nil or empty selector
/// creeps in, it should match nothing, not everything"): a controller with an empty
/// selector would otherwise adopt every pod in the namespace.
pub fn controller_selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !label_selector::is_empty(selector) && label_selector::selector_matches(Some(selector), labels)
}

/// The owner reference that makes `owner` the controller of a child: the garbage
/// collector follows it, and `blockOwnerDeletion` makes foreground deletion wait.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owners of kind `K` a pod event concerns: its controller when that is a `K`, or,
/// for an orphan, every `K` of its namespace whose selector (`selector_of`) would
/// adopt it. A pod controlled by something else concerns no `K`.
pub fn owners_for_pod<K>(
    owners: &kube::runtime::reflector::Store<K>,
    pod: &Pod,
    selector_of: impl Fn(&K) -> Option<&LabelSelector>,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    use kube::runtime::reflector::ObjectRef;
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        return if owner.kind == K::kind(&()) {
            vec![ObjectRef::new(&owner.name).within(&ns)]
        } else {
            vec![]
        };
    }
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|o| selector_of(o).is_some_and(|s| controller_selects(s, pod.labels())))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The controller owner reference of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Upstream's "active" pod: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && !is_deleting(&pod.metadata)
}

/// When the pod's Ready condition last became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Option<&Time>> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref())
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`. A Ready condition without a
/// transition time counts as available only when no minimum is asked for.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    let since = ready_since(pod)??;
    let left = since.0.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (left > 0).then_some(left)
}

/// Creates a pod from `template` named `<generate_name>xxxxx`, controlled by `owner`.
/// Pod creates and deletes in flight at once, across every loop in the process.
///
/// kube's client speaks HTTP/1.1, so each request in flight is a connection of its own
/// (a TLS handshake and its buffers): a ReplicaSet's burst of 500 creates would open
/// 500 connections and cost ~80 MiB. Upstream bounds the same thing with client QPS.
pub const MAX_WRITES_IN_FLIGHT: usize = 32;

static WRITES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_WRITES_IN_FLIGHT);

/// Waits for one of the [`MAX_WRITES_IN_FLIGHT`] slots; the slot is free again when the
/// permit drops.
pub async fn write_slot() -> tokio::sync::SemaphorePermit<'static> {
    WRITES
        .acquire()
        .await
        .expect("the write semaphore is never closed")
}

pub async fn create_pod(
    api: &Api<Pod>,
    template: &PodTemplateSpec,
    generate_name: &str,
    owner: OwnerReference,
) -> kube::Result<Pod> {
    let _slot = write_slot().await;
    let tmeta = template.metadata.clone().unwrap_or_default();
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    };
    api.create(&PostParams::default(), &pod).await
}

/// Deletes a pod; one already gone is fine (someone else finished the job).
pub async fn delete_pod(api: &Api<Pod>, name: &str) -> kube::Result<()> {
    let _slot = write_slot().await;
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `owner` the controller of an orphan. The pod's uid in the patch is a
/// precondition: a pod recreated under the same name is not adopted by mistake.
pub async fn adopt<K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    api: &Api<K>,
    child: &K,
    owner: OwnerReference,
) -> kube::Result<K> {
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": child.meta().uid}});
    api.patch(
        &child.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
}

/// Removes `owner_uid`'s owner reference from a child that no longer matches.
pub async fn release<K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    api: &Api<K>,
    child: &K,
    owner_uid: &str,
) -> kube::Result<()> {
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
        "uid": child.meta().uid,
    }});
    match api
        .patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone or changed under us: nothing of ours is left to release.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        Err(e) => Err(e),
    }
}

/// What an event says of a failed write, as upstream's `%v` of an API error: the Status
/// message (`pods "x" is forbidden: ...`), else the error itself.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// A pod write on behalf of `owner`, for [`publish_pod_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodWrite {
    Create,
    Delete,
}

/// The event upstream's pod control records about `owner` for a create or delete of pod
/// `pod`: `SuccessfulCreate` "Created pod: web-x7k2p" / `SuccessfulDelete` "Deleted pod:
/// web-x7k2p", or `FailedCreate` "Error creating: ..." / `FailedDelete` "Error deleting:
/// ..." with the API's message. (`kubectl describe rs|ds|job` lists them.)
pub async fn publish_pod_event<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    owner: &K,
    write: PodWrite,
    pod: &str,
    error: Option<&kube::Error>,
    component: &str,
) {
    let (reason, message) = match (write, error) {
        (PodWrite::Create, None) => ("SuccessfulCreate", format!("Created pod: {pod}")),
        (PodWrite::Delete, None) => ("SuccessfulDelete", format!("Deleted pod: {pod}")),
        (PodWrite::Create, Some(e)) => (
            "FailedCreate",
            format!("Error creating: {}", error_message(e)),
        ),
        (PodWrite::Delete, Some(e)) => (
            "FailedDelete",
            format!("Error deleting: {}", error_message(e)),
        ),
    };
    let type_ = if error.is_none() { "Normal" } else { "Warning" };
    publish_event(client, owner, type_, reason, &message, component).await
}

/// [`record_event`] for callers that go on whatever happens: a failure is logged with
/// the object and the reason, never returned.
pub async fn publish_event<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    object: &K,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    if let Err(e) = record_event(client, object, type_, reason, message, component).await {
        let name = object.meta().name.as_deref().unwrap_or_default();
        tracing::warn!(object = %name, reason, component, error = %e, "recording an event");
    }
}

/// Records a core/v1 Event about `object` (what `kubectl describe` shows), as the
/// `component` reporting it, through the process's one [`Recorder`]: a repeat of an
/// earlier event counts on it, too many become one combined event, and a flood is
/// rate-limited, as client-go's recorder does. Callers log a failure and go on.
///
/// [`Recorder`]: crate::shared::recorder::Recorder
pub async fn record_event<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    object: &K,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> kube::Result<()> {
    use crate::shared::recorder::{new_event, Recorder};
    use k8s_openapi::api::core::v1::ObjectReference;
    let meta = object.meta();
    let reference = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    let event = new_event(
        reference,
        type_,
        reason,
        message,
        component,
        Timestamp::now(),
    );
    Recorder::global().record_event(client, event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_controller_selects_by_its_selector_but_never_with_an_empty_one() {
        let app = labels(&[("a", "1")]);
        let by = |pairs: &[(&str, &str)]| LabelSelector {
            match_labels: Some(labels(pairs)),
            ..Default::default()
        };
        let cases = [
            ("empty selects nothing", LabelSelector::default(), false),
            ("matching labels", by(&[("a", "1")]), true),
            ("other labels", by(&[("a", "2")]), false),
        ];
        for (name, selector, want) in cases {
            assert_eq!(controller_selects(&selector, &app), want, "{name}");
        }
    }
}

/// How a controller's claim splits candidate children (pods, ControllerRevisions).
#[derive(Debug)]
pub struct Claimed<'a, K> {
    /// Controlled by the owner and matching its selector.
    pub owned: Vec<&'a K>,
    /// Orphans that match: to be adopted.
    pub adopt: Vec<&'a K>,
    /// Controlled by the owner but no longer matching: to be released.
    pub release: Vec<&'a K>,
}

/// Upstream ClaimObjects for any kind: the owner (by uid) keeps its matching children,
/// adopts matching orphans that are not being deleted and releases children that stopped
/// matching. An owner being deleted adopts and releases nothing.
pub fn claim<'a, K: Resource>(
    selector: &LabelSelector,
    owner: &ObjectMeta,
    candidates: impl IntoIterator<Item = &'a K>,
) -> Claimed<'a, K> {
    let mut claimed = Claimed {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    let uid = owner.uid.as_deref().unwrap_or_default();
    let owner_deleting = is_deleting(owner);
    let no_labels = BTreeMap::new();
    for child in candidates {
        let meta = child.meta();
        let matches = controller_selects(selector, meta.labels.as_ref().unwrap_or(&no_labels));
        match controller_of(meta) {
            Some(o) if o.uid == uid && matches => claimed.owned.push(child),
            Some(o) if o.uid == uid && !owner_deleting => claimed.release.push(child),
            None if matches && !owner_deleting && !is_deleting(meta) => claimed.adopt.push(child),
            _ => {}
        }
    }
    claimed
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    fn child(name: &str, app: &str, owner_uid: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                owner_references: owner_uid.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn claim_keeps_adopts_and_releases_by_uid_and_selector() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        let owner = ObjectMeta {
            uid: Some("me".into()),
            ..Default::default()
        };
        let pods = [
            child("owned", "web", Some("me")),
            child("orphan", "web", None),
            child("relabelled", "db", Some("me")),
            child("someone-elses", "web", Some("other")),
            child("orphan-db", "db", None),
        ];
        let c = claim(&selector, &owner, &pods);
        let names = |v: &[&Pod]| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&c.owned), vec!["owned"]);
        assert_eq!(names(&c.adopt), vec!["orphan"]);
        assert_eq!(names(&c.release), vec!["relabelled"]);
        let deleting = ObjectMeta {
            deletion_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
            ..owner
        };
        let c = claim(&selector, &deleting, &pods);
        assert!(
            c.adopt.is_empty() && c.release.is_empty(),
            "an owner being deleted claims nothing new"
        );
    }
}
