//! What the Node authorizer decides from, as upstream's node graph: which objects each pod
//! bound to a node uses (its service account, secrets, config maps, claims and resource
//! claims, all in the pod's namespace), which claim each persistent volume is bound
//! to and which secrets a bound volume's source names for the node to use (upstream's
//! `VisitPVSecretNames`, the kubelet-visible ones). Pure data: [`super::NodeAuthorizer`] keeps it current from the watch caches.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// A kind of object a pod uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Uses {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
    ResourceClaim,
}

/// A namespace and a name.
pub type Key = (String, String);

#[derive(Debug)]
struct PodVertex {
    node: String,
    uses: Vec<(Uses, String)>,
}

/// Pods bound to nodes with what they use, and persistent volumes with their claims.
#[derive(Debug, Default)]
pub struct Graph {
    pods: HashMap<Key, PodVertex>,
    used_by: HashMap<(Uses, Key), HashSet<Key>>,
    claims: HashMap<String, Key>,
    /// The secrets each bound persistent volume names, and the reverse.
    volume_secrets: HashMap<String, Vec<Key>>,
    secret_volumes: HashMap<Key, HashSet<String>>,
}

fn key_of(obj: &Value) -> Key {
    let meta = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (meta("namespace"), meta("name"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Everything a pod refers to by name, as upstream's `VisitPodSecretNames`,
/// `VisitPodConfigmapNames`, its claims (ephemeral ones are `<pod>-<volume>`), its
/// service account and the resource claims its status names.
pub fn pod_uses(pod: &Value) -> Vec<(Uses, String)> {
    let mut out = Vec::new();
    let mut add = |kind: Uses, name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.push((kind, n.to_string()));
        }
    };
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    add(
        Uses::ServiceAccount,
        str_at(spec, "/serviceAccountName").or_else(|| str_at(spec, "/serviceAccount")),
    );
    for s in items(spec, "/imagePullSecrets") {
        add(Uses::Secret, str_at(s, "/name"));
    }
    for list in ["/containers", "/initContainers", "/ephemeralContainers"] {
        for c in items(spec, list) {
            for e in items(c, "/envFrom") {
                add(Uses::Secret, str_at(e, "/secretRef/name"));
                add(Uses::ConfigMap, str_at(e, "/configMapRef/name"));
            }
            for e in items(c, "/env") {
                add(Uses::Secret, str_at(e, "/valueFrom/secretKeyRef/name"));
                add(
                    Uses::ConfigMap,
                    str_at(e, "/valueFrom/configMapKeyRef/name"),
                );
            }
        }
    }
    let pod_name = str_at(pod, "/metadata/name").unwrap_or_default();
    for v in items(spec, "/volumes") {
        add(Uses::Secret, str_at(v, "/secret/secretName"));
        add(Uses::ConfigMap, str_at(v, "/configMap/name"));
        for s in items(v, "/projected/sources") {
            add(Uses::Secret, str_at(s, "/secret/name"));
            add(Uses::ConfigMap, str_at(s, "/configMap/name"));
        }
        // The volume plugins that name a secret of the pod's namespace.
        for p in [
            "/azureFile/secretName",
            "/cephfs/secretRef/name",
            "/cinder/secretRef/name",
            "/csi/nodePublishSecretRef/name",
            "/flexVolume/secretRef/name",
            "/iscsi/secretRef/name",
            "/rbd/secretRef/name",
            "/scaleIO/secretRef/name",
            "/storageos/secretRef/name",
        ] {
            add(Uses::Secret, str_at(v, p));
        }
        add(
            Uses::PersistentVolumeClaim,
            str_at(v, "/persistentVolumeClaim/claimName"),
        );
        if v.get("ephemeral").is_some() {
            let volume = str_at(v, "/name").unwrap_or_default();
            add(
                Uses::PersistentVolumeClaim,
                Some(&format!("{pod_name}-{volume}")),
            );
        }
    }
    for s in items(pod, "/status/resourceClaimStatuses") {
        add(Uses::ResourceClaim, str_at(s, "/resourceClaimName"));
    }
    out.sort_by(|a, b| (a.0 as u8, &a.1).cmp(&(b.0 as u8, &b.1)));
    out.dedup();
    out
}

/// The secrets a persistent volume's source names that the node itself uses (to stage,
/// publish, expand or mount the volume), as upstream's `VisitPVSecretNames` with
/// `kubeletVisible`: the CSI controller-side secrets are left out, and the older plugins'
/// references without a namespace mean the claim's namespace.
pub fn volume_secrets(pv: &Value) -> Vec<Key> {
    let Some(spec) = pv.get("spec") else {
        return Vec::new();
    };
    let claim_ns = str_at(spec, "/claimRef/namespace").unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |ns: Option<&str>, name: Option<&str>| {
        if let Some(name) = name {
            out.push((ns.unwrap_or(claim_ns).to_string(), name.to_string()));
        }
    };
    if let Some(af) = spec.get("azureFile") {
        add(str_at(af, "/secretNamespace"), str_at(af, "/secretName"));
    }
    // Upstream takes a Cinder, StorageOS or CSI reference's namespace as written.
    for (source, written_ns) in [
        ("cephfs", false),
        ("cinder", true),
        ("flexVolume", false),
        ("rbd", false),
        ("scaleIO", false),
        ("iscsi", false),
        ("storageos", true),
    ] {
        if let Some(r) = spec.pointer(&format!("/{source}/secretRef")) {
            let ns = str_at(r, "/namespace").or(written_ns.then_some(""));
            add(ns, str_at(r, "/name"));
        }
    }
    for field in [
        "nodePublishSecretRef",
        "nodeStageSecretRef",
        "nodeExpandSecretRef",
    ] {
        if let Some(r) = spec.pointer(&format!("/csi/{field}")) {
            add(
                Some(str_at(r, "/namespace").unwrap_or_default()),
                str_at(r, "/name"),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

impl Graph {
    /// Adds or replaces a pod; a pod bound to no node is left out (as upstream).
    pub fn put_pod(&mut self, pod: &Value) {
        let key = key_of(pod);
        self.remove_key(&key);
        let Some(node) = str_at(pod, "/spec/nodeName") else {
            return;
        };
        let uses = pod_uses(pod);
        for (kind, name) in &uses {
            self.used_by
                .entry((*kind, (key.0.clone(), name.clone())))
                .or_default()
                .insert(key.clone());
        }
        self.pods.insert(
            key,
            PodVertex {
                node: node.to_string(),
                uses,
            },
        );
    }

    pub fn remove_pod(&mut self, pod: &Value) {
        self.remove_key(&key_of(pod));
    }

    fn remove_key(&mut self, key: &Key) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        for (kind, name) in old.uses {
            let used = (kind, (key.0.clone(), name));
            if let Some(pods) = self.used_by.get_mut(&used) {
                pods.remove(key);
                if pods.is_empty() {
                    self.used_by.remove(&used);
                }
            }
        }
    }

    /// Adds or replaces a persistent volume's claim (its `spec.claimRef`) and, for a
    /// bound volume, the secrets its source names ([`volume_secrets`]).
    pub fn put_volume(&mut self, pv: &Value) {
        let name = key_of(pv).1;
        self.remove_volume_secrets(&name);
        match (
            str_at(pv, "/spec/claimRef/namespace"),
            str_at(pv, "/spec/claimRef/name"),
        ) {
            (Some(ns), Some(claim)) => {
                self.claims
                    .insert(name.clone(), (ns.to_string(), claim.to_string()));
                let secrets = volume_secrets(pv);
                for secret in &secrets {
                    self.secret_volumes
                        .entry(secret.clone())
                        .or_default()
                        .insert(name.clone());
                }
                if !secrets.is_empty() {
                    self.volume_secrets.insert(name, secrets);
                }
            }
            _ => {
                self.claims.remove(&name);
            }
        }
    }

    pub fn remove_volume(&mut self, pv: &Value) {
        let name = key_of(pv).1;
        self.remove_volume_secrets(&name);
        self.claims.remove(&name);
    }

    fn remove_volume_secrets(&mut self, volume: &str) {
        for secret in self.volume_secrets.remove(volume).unwrap_or_default() {
            if let Some(volumes) = self.secret_volumes.get_mut(&secret) {
                volumes.remove(volume);
                if volumes.is_empty() {
                    self.secret_volumes.remove(&secret);
                }
            }
        }
    }

    /// The bound persistent volumes whose sources name the secret.
    pub fn volumes_using_secret(&self, namespace: &str, name: &str) -> Vec<String> {
        self.secret_volumes
            .get(&(namespace.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn clear_pods(&mut self) {
        self.pods.clear();
        self.used_by.clear();
    }

    pub fn clear_volumes(&mut self) {
        self.claims.clear();
        self.volume_secrets.clear();
        self.secret_volumes.clear();
    }

    /// The pods bound to `node` that use the object.
    pub fn pods_using(&self, node: &str, kind: Uses, namespace: &str, name: &str) -> Vec<Key> {
        self.used_by
            .get(&(kind, (namespace.to_string(), name.to_string())))
            .into_iter()
            .flatten()
            .filter(|p| self.pods.get(*p).is_some_and(|v| v.node == node))
            .cloned()
            .collect()
    }

    /// The node a pod is bound to.
    pub fn pod_node(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.node.as_str())
    }

    /// The claim a persistent volume is bound to.
    pub fn claim_of(&self, volume: &str) -> Option<&Key> {
        self.claims.get(volume)
    }
}
