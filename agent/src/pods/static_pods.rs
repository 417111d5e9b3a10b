//! Static pods: pod manifests in a folder on the node (the kubelet's staticPodPath), run by
//! the agent without the API, and mirrored into it as read-only "mirror pods" so kubectl
//! shows them. A static pod's UID is a hash of its manifest and the node, so an unchanged
//! file means the same pod across agent restarts, and an edited file a new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};

/// How often the folder is read (the kubelet's fileCheckFrequency).
pub const CHECK_EVERY: Duration = Duration::from_secs(20);
pub const ANNOTATION_SOURCE: &str = "kubernetes.io/config.source";
pub const ANNOTATION_HASH: &str = "kubernetes.io/config.hash";
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";

/// Whether an API pod is the mirror of a static pod (the agent runs the file's pod instead).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.annotations().contains_key(ANNOTATION_MIRROR)
}

fn fnv_hex(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The static pod a manifest describes, as the kubelet completes it: named
/// `<name>-<node>`, in `default` unless it says otherwise, bound to this node, with a UID
/// and the config annotations.
pub fn from_manifest(text: &str, source: &Path, node: &str) -> Result<Pod, String> {
    let mut pod: Pod = serde_yaml::from_str(text)
        .map_err(|e| format!("{}: not a Pod manifest: {e}", source.display()))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: the pod has no name", source.display()))?;
    let hash = fnv_hex(format!("{node}\n{}\n{text}", source.display()).as_bytes());
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &hash[0..8],
        &hash[8..12],
        &hash[12..16],
        &hash[0..4],
        &hash[4..16]
    );
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    pod.metadata.uid = Some(uid);
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_SOURCE.into(), "file".into());
    annotations.insert(ANNOTATION_HASH.into(), hash);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy
            .get_or_insert_with(|| "File".into());
    }
    pod.status = None;
    Ok(pod)
}

/// Every pod manifest in `dir` (`*.yaml`, `*.yml`, `*.json`, not hidden), by UID. Files that
/// do not parse are logged and skipped.
pub fn read_dir(dir: &Path, node: &str) -> BTreeMap<String, Pod> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let wanted = !name.starts_with('.')
            && [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext));
        if !wanted {
            continue;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| from_manifest(&t, &path, node))
        {
            Ok(pod) => {
                out.insert(pod.uid().unwrap_or_default(), pod);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a static pod manifest")
            }
        }
    }
    out
}

/// The mirror pod for a static pod: the same spec and metadata, annotated as a mirror, owned
/// by the node, with the API's own UID.
pub fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut mirror = pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    let hash = pod
        .annotations()
        .get(ANNOTATION_HASH)
        .cloned()
        .unwrap_or_default();
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name_any(),
        uid: node.uid().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    }]);
    mirror
}

/// Makes sure the mirror of `pod` exists (creating it, or replacing a stale one of an older
/// manifest).
pub async fn ensure_mirror(client: &Client, pod: &Pod, node_name: &str) {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let hash = pod.annotations().get(ANNOTATION_HASH).cloned();
    match own_pod(&api, &pod.name_any(), node_name).await {
        Ok(Some(existing)) if existing.annotations().get(ANNOTATION_MIRROR) == hash.as_ref() => {
            return
        }
        Ok(Some(_)) => {
            let _ = api
                .delete(
                    &pod.name_any(),
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(pod = %pod.name_any(), error = %e, "reading a mirror pod");
            return;
        }
    }
    let node = match Api::<Node>::all(client.clone()).get(node_name).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "reading this node for a mirror pod's owner");
            return;
        }
    };
    if let Err(e) = api
        .create(&PostParams::default(), &mirror_of(pod, &node))
        .await
    {
        tracing::warn!(pod = %pod.name_any(), error = %e, "creating a mirror pod; retrying");
    }
}

/// The pod `name` if it is bound to this node. A list selecting this node's pods, not a
/// GET: the Node authorizer refuses a node the GET of a pod it has no relationship to,
/// a missing one included, and lets it list its own pods.
async fn own_pod(api: &Api<Pod>, name: &str, node_name: &str) -> kube::Result<Option<Pod>> {
    let params =
        ListParams::default().fields(&format!("metadata.name={name},spec.nodeName={node_name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// Deletes the mirror of a static pod that is gone.
pub async fn delete_mirror(client: &Client, namespace: &str, name: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(p)) if is_mirror(&p) => {
            let _ = api
                .delete(
                    name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn a_manifest_becomes_a_pod_of_this_node_with_a_stable_uid() {
        let pod =
            from_manifest(MANIFEST, Path::new("/etc/kybern/manifests/web.yaml"), "n1").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(pod.annotations()[ANNOTATION_SOURCE], "file");
        let again =
            from_manifest(MANIFEST, Path::new("/etc/kybern/manifests/web.yaml"), "n1").unwrap();
        assert_eq!(pod.uid(), again.uid(), "same file, same pod");
        let edited = from_manifest(
            &MANIFEST.replace("busybox", "busybox:2"),
            Path::new("/etc/kybern/manifests/web.yaml"),
            "n1",
        )
        .unwrap();
        assert_ne!(pod.uid(), edited.uid(), "an edited manifest is a new pod");
        assert_eq!(pod.uid().unwrap().len(), 36);
    }

    #[test]
    fn a_mirror_is_annotated_and_owned_by_the_node() {
        let pod = from_manifest(MANIFEST, Path::new("/m/web.yaml"), "n1").unwrap();
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.uid = Some("node-uid".into());
        let mirror = mirror_of(&pod, &node);
        assert!(is_mirror(&mirror));
        assert_eq!(mirror.metadata.uid, None);
        assert_eq!(mirror.metadata.owner_references.unwrap()[0].uid, "node-uid");
        assert!(!is_mirror(&pod));
    }

    #[test]
    fn bad_manifests_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: Pod\nmetadata: {}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), MANIFEST).unwrap();
        let pods = read_dir(dir.path(), "n1");
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods.values().next().unwrap().metadata.name.as_deref(),
            Some("web-n1")
        );
    }
}
