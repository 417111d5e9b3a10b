//! The scheduler's view of the cluster: one precomputed `NodeInfo` per node (allocatable,
//! requested, host ports, labels, taints, pods) kept current from the node and pod
//! informers, plus pods this scheduler has assumed onto a node before the informer shows
//! the binding, so two pods that each fit only once never land on the same node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{PodAffinityTerm, Taint, Toleration, WeightedPodAffinityTerm};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::objects::{
    Node, PersistentVolumeClaim, Pod, PodSpec, BETA_CLASS_ANNOTATION, BIND_COMPLETED_ANNOTATION,
};

use super::framework::event;
use super::resources::{node_allocatable, non_zero_requests, pod_requests, Resource};
use controllers::shared::labels::Labels;

/// Namespace name → its labels, for namespaceSelector.
pub type NamespaceLabels = HashMap<String, Labels>;

/// A host port a pod claims: two claims conflict on the same protocol and port when
/// their IPs are equal or either is the wildcard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || wild(&self.ip) || wild(&o.ip))
    }
}

/// A pod with everything the plugins ask of it parsed once.
///
/// It keeps no `Pod` object: the scheduler holds one of these for every pod in the
/// cluster (3000 pending pods in `kybern bench scheduler`), and a lean `Pod` with its
/// `ObjectMeta` of mostly empty fields was ~850 bytes before its strings. What is left of
/// the spec after parsing (node selection, tolerations, topology spread, images) is kept
/// boxed for pods still to schedule and dropped for assigned ones.
#[derive(Debug)]
pub struct PodInfo {
    /// The rest of the spec, for pods the scheduler places; None once assigned.
    pub spec: Option<Box<PodSpec>>,
    pub uid: String,
    pub resource_version: Option<String>,
    /// metadata.creationTimestamp in ns: the queue's order among equal priorities.
    pub created: i128,
    /// status.nominatedNodeName (set after this pod preempted others).
    pub nominated_node: Option<String>,
    /// The message of the pod's PodScheduled=False/Unschedulable condition, if any, so
    /// the same verdict is not written twice.
    pub unschedulable_message: Option<String>,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub priority: i32,
    /// metadata.deletionTimestamp is set (the pod is terminating).
    pub deleting: bool,
    /// status.startTime (else creation time) in ns: among equal priorities the pod
    /// running longer is the more important one to keep.
    pub started: i128,
    pub requests: Resource,
    pub non_zero: (i64, i64),
    pub ports: Vec<HostPort>,
    /// The pod's (anti-)affinity terms; None for the many pods without any.
    pub terms: Option<Box<PodTerms>>,
    /// spec.tolerations, shared between pods with the same list (see [`intern`]).
    pub tolerations: Arc<[Toleration]>,
}

/// One shared copy of each recently seen toleration list. Admission gives nearly every
/// pod the same two (not-ready and unreachable, NoExecute for 300 s), ~400 bytes a pod
/// with their strings, held for every pending pod; a handful of distinct lists covers a
/// cluster's pods, and a pod whose list is not among the last few keeps its own.
fn intern(list: Vec<Toleration>) -> Arc<[Toleration]> {
    static RECENT: Mutex<Vec<Arc<[Toleration]>>> = Mutex::new(Vec::new());
    const KEEP: usize = 8;
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = recent.iter().position(|l| **l == *list) {
        let l = recent.remove(i);
        recent.push(l.clone());
        return l;
    }
    let l: Arc<[Toleration]> = list.into();
    if recent.len() == KEEP {
        recent.remove(0);
    }
    recent.push(l.clone());
    l
}

/// A pod's inter-pod (anti-)affinity terms.
#[derive(Debug, Default)]
pub struct PodTerms {
    pub required_affinity: Vec<PodAffinityTerm>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedPodAffinityTerm>,
}

impl PodInfo {
    /// Parses the pod once. What is parsed into fields (labels, pod (anti-)affinity
    /// terms, container resource requests) is moved out of the object rather than
    /// copied, so each pod's data is held once.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let mut pod = Arc::unwrap_or_clone(pod);
        let requests = pod_requests(&pod);
        let non_zero = non_zero_requests(&pod);
        let labels = pod.metadata.labels.take().unwrap_or_default();
        let uid = pod.metadata.uid.take().unwrap_or_else(|| pod_key(&pod));
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map_or(0, |t| t.0.as_nanosecond());
        let created = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_nanosecond());
        let status = pod.status.take().unwrap_or_default();
        let unschedulable_message = status
            .conditions
            .into_iter()
            .flatten()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| c.message.unwrap_or_default());
        let spec = pod.spec.get_or_insert_with(Default::default);
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: p.host_ip.clone().unwrap_or_default(),
                    port,
                })
            })
            .collect();
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.resources = None;
            c.ports = None;
        }
        // Decoding grows vectors to 4 elements; most pods have one container and a
        // couple of tolerations, held for as long as they are pending.
        spec.containers.shrink_to_fit();
        if let Some(init) = spec.init_containers.as_mut() {
            init.shrink_to_fit();
        }
        let tolerations = intern(spec.tolerations.take().unwrap_or_default());
        // The informer checked it before queueing the pod; nothing reads it after.
        spec.scheduler_name = None;
        let priority = spec.priority.unwrap_or(0);
        let (pa, anti) = match spec.affinity.as_mut() {
            Some(a) => (
                a.pod_affinity.take().unwrap_or_default(),
                a.pod_anti_affinity.take().unwrap_or_default(),
            ),
            None => Default::default(),
        };
        PodInfo {
            tolerations,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            started,
            uid,
            namespace: pod.metadata.namespace.take().unwrap_or_default(),
            name: pod.metadata.name.take().unwrap_or_default(),
            labels,
            priority,
            requests,
            non_zero,
            ports,
            terms: Some(Box::new(PodTerms {
                required_affinity: pa
                    .required_during_scheduling_ignored_during_execution
                    .unwrap_or_default(),
                preferred_affinity: pa
                    .preferred_during_scheduling_ignored_during_execution
                    .unwrap_or_default(),
                required_anti_affinity: anti
                    .required_during_scheduling_ignored_during_execution
                    .unwrap_or_default(),
                preferred_anti_affinity: anti
                    .preferred_during_scheduling_ignored_during_execution
                    .unwrap_or_default(),
            }))
            .filter(|t| {
                !(t.required_affinity.is_empty()
                    && t.required_anti_affinity.is_empty()
                    && t.preferred_affinity.is_empty()
                    && t.preferred_anti_affinity.is_empty())
            }),
            resource_version: pod.metadata.resource_version.take(),
            created,
            nominated_node: status.nominated_node_name,
            unschedulable_message,
            spec: pod.spec.map(Box::new),
        }
    }

    /// For a pod bound to a node: everything the plugins read of existing pods is parsed
    /// into the fields above, so the object itself is not kept (all such pods share one
    /// empty object). The cache holds every pod in the cluster; this keeps each small.
    pub fn new_assigned(pod: Arc<Pod>) -> PodInfo {
        let mut info = PodInfo::new(pod);
        info.spec = None;
        info.resource_version = None;
        info.unschedulable_message = None;
        info
    }

    pub fn has_affinity(&self) -> bool {
        self.terms.is_some()
    }

    pub fn required_affinity(&self) -> &[PodAffinityTerm] {
        self.terms.as_ref().map_or(&[], |t| &t.required_affinity)
    }

    pub fn required_anti_affinity(&self) -> &[PodAffinityTerm] {
        self.terms
            .as_ref()
            .map_or(&[], |t| &t.required_anti_affinity)
    }

    pub fn preferred_affinity(&self) -> &[WeightedPodAffinityTerm] {
        self.terms.as_ref().map_or(&[], |t| &t.preferred_affinity)
    }

    pub fn preferred_anti_affinity(&self) -> &[WeightedPodAffinityTerm] {
        self.terms
            .as_ref()
            .map_or(&[], |t| &t.preferred_anti_affinity)
    }
}

pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// What preemption needs of a PodDisruptionBudget.
#[derive(Clone, Debug, Default)]
pub struct Pdb {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    /// status.disruptionsAllowed.
    pub allowed: i32,
    /// status.disruptedPods: names already being disrupted (they spend nothing).
    pub disrupted: Vec<String>,
}

impl Pdb {
    pub fn new(pdb: &PodDisruptionBudget) -> Pdb {
        let status = pdb.status.as_ref();
        Pdb {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: pdb.spec.as_ref().and_then(|s| s.selector.clone()),
            allowed: status.map_or(0, |s| s.disruptions_allowed),
            disrupted: status
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// One node and what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable: Resource,
    pub requested: Resource,
    /// Cpu and memory with the 100m / 200Mi defaults for pods that request none.
    pub non_zero_requested: (i64, i64),
    pub ports: Vec<HostPort>,
    pub pods: Vec<Arc<PodInfo>>,
    /// The subset of `pods` with any pod (anti-)affinity term, so pods without terms
    /// cost O(nodes) rather than O(pods) in the inter-pod plugins.
    pub affinity_pods: Vec<Arc<PodInfo>>,
    /// Image name → size in bytes, from node.status.images.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Node) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: Labels::new(),
            taints: vec![],
            unschedulable: false,
            ready: false,
            allocatable: Resource::default(),
            requested: Resource::default(),
            non_zero_requested: (0, 0),
            ports: vec![],
            pods: vec![],
            affinity_pods: vec![],
            images: HashMap::new(),
        };
        info.set_node(node);
        info
    }

    /// Takes what the plugins read out of the node object; the object itself is dropped.
    fn set_node(&mut self, node: Node) {
        self.allocatable = node_allocatable(&node);
        let spec = node.spec.unwrap_or_default();
        let status = node.status.unwrap_or_default();
        self.labels = node.metadata.labels.unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        self.ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        self.images = status
            .images
            .iter()
            .flatten()
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names
                    .iter()
                    .flatten()
                    .map(move |n| (normalize_image(n), size))
            })
            .collect();
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.requested.pods += 1;
        self.non_zero_requested.0 += p.non_zero.0;
        self.non_zero_requested.1 += p.non_zero.1;
        self.ports.extend(p.ports.iter().cloned());
        if p.has_affinity() {
            self.affinity_pods.push(p.clone());
        }
        self.pods.push(p);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let p = self.pods.swap_remove(i);
        self.affinity_pods.retain(|a| a.uid != uid);
        self.requested.sub(&p.requests);
        self.requested.pods -= 1;
        self.non_zero_requested.0 -= p.non_zero.0;
        self.non_zero_requested.1 -= p.non_zero.1;
        for port in &p.ports {
            if let Some(j) = self.ports.iter().position(|q| q == port) {
                self.ports.swap_remove(j);
            }
        }
        Some(p)
    }
}

/// "nginx" and "docker.io/library/nginx:latest" name the same image.
pub fn normalize_image(name: &str) -> String {
    let mut n = name.to_string();
    let last = n.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        n.push_str(":latest");
    }
    let first = n.split('/').next().unwrap_or("");
    let has_registry =
        n.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        n = if n.contains('/') {
            format!("docker.io/{n}")
        } else {
            format!("docker.io/library/{n}")
        };
    }
    n
}

struct CachedPod {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// What VolumeBinding reads of a PersistentVolumeClaim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimInfo {
    /// The beta class annotation, else spec.storageClassName ("" for none).
    pub class: String,
    pub volume_name: String,
    /// spec.volumeName set and the bind-completed annotation present.
    pub fully_bound: bool,
    pub deleting: bool,
    /// status.phase Lost (its volume is gone).
    pub lost: bool,
}

impl ClaimInfo {
    pub fn new(c: &PersistentVolumeClaim) -> ClaimInfo {
        let annotations = c.metadata.annotations.as_ref();
        let spec = c.spec.as_ref();
        let class = annotations
            .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
            .or(spec.and_then(|s| s.storage_class_name.as_ref()))
            .cloned()
            .unwrap_or_default();
        let volume_name = spec.and_then(|s| s.volume_name.clone()).unwrap_or_default();
        ClaimInfo {
            class,
            fully_bound: !volume_name.is_empty()
                && annotations.is_some_and(|a| a.contains_key(BIND_COMPLETED_ANNOTATION)),
            volume_name,
            deleting: c.metadata.deletion_timestamp.is_some(),
            lost: c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost"),
        }
    }
}

/// The claims (by namespace/name) and the names of the StorageClasses whose
/// volumeBindingMode is WaitForFirstConsumer.
#[derive(Debug, Default)]
pub struct Volumes {
    pub claims: HashMap<String, ClaimInfo>,
    pub delayed_classes: std::collections::HashSet<String>,
}

/// Nodes in a vector (stable indices for the rotating search start) plus an index by name.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, CachedPod>,
    /// Pods whose node the informer has not shown yet; they wait here.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Image → number of nodes that have it (ImageLocality's spread factor).
    pub image_nodes: HashMap<String, usize>,
    /// PodDisruptionBudgets by namespace/name, for preemption.
    pub pdbs: HashMap<String, Pdb>,
    pdb_list: Vec<Pdb>,
    /// Namespace labels, for namespaceSelector in pod (anti-)affinity terms.
    pub namespaces: NamespaceLabels,
    /// Claims and the classes that delay binding, for VolumeBinding.
    pub volumes: Volumes,
    /// How many cached pods carry any pod (anti-)affinity term: while none do, a pod
    /// without terms of its own skips the inter-pod plugins' walk over every node.
    affinity_pods: usize,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn set_pdb(&mut self, key: String, pdb: Option<Pdb>) {
        match pdb {
            Some(p) => self.pdbs.insert(key, p),
            None => self.pdbs.remove(&key),
        };
        self.pdb_list = self.pdbs.values().cloned().collect();
    }

    pub fn pdbs(&self) -> &[Pdb] {
        &self.pdb_list
    }

    /// The uids of bound or assumed pods that `keep` rejects.
    pub fn pod_uids_except(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.pods.keys().filter(|u| !keep(u)).cloned().collect()
    }

    /// Whether any bound or assumed pod has a pod (anti-)affinity term.
    pub fn any_affinity_pods(&self) -> bool {
        self.affinity_pods > 0
    }

    fn remember(&mut self, info: Arc<PodInfo>, node: String, assumed: bool) {
        self.place(info.clone(), &node);
        self.affinity_pods += info.has_affinity() as usize;
        if let Some(old) = self.pods.insert(
            info.uid.clone(),
            CachedPod {
                info,
                node,
                assumed,
            },
        ) {
            self.affinity_pods -= old.info.has_affinity() as usize;
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Adds or updates a node. Returns the event it amounts to (`framework::event`
    /// bits; 0 when nothing a filter looks at changed), so a heartbeat that only bumps
    /// timestamps does not send unschedulable pods back to the active queue.
    pub fn apply_node(&mut self, node: Node) -> u16 {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.index.get(&name) {
            Some(&i) => {
                let b = &self.nodes[i];
                let before = (
                    b.labels.clone(),
                    b.taints.clone(),
                    b.allocatable.clone(),
                    b.unschedulable,
                    b.ready,
                );
                self.count_images(i, -1);
                self.nodes[i].set_node(node);
                self.count_images(i, 1);
                let a = &self.nodes[i];
                let mut ev = 0;
                if before.0 != a.labels {
                    ev |= event::NODE_LABELS;
                }
                if before.1 != a.taints || before.4 != a.ready {
                    ev |= event::NODE_TAINTS;
                }
                if before.2 != a.allocatable {
                    ev |= event::NODE_ALLOCATABLE;
                }
                if before.3 != a.unschedulable {
                    ev |= event::NODE_CORDON;
                }
                ev
            }
            None => {
                let mut info = NodeInfo::new(node);
                for p in self.orphans.remove(&name).unwrap_or_default() {
                    info.add_pod(p);
                }
                self.index.insert(name, self.nodes.len());
                self.nodes.push(info);
                self.count_images(self.nodes.len() - 1, 1);
                event::NODE_ADD
            }
        }
    }

    fn count_images(&mut self, i: usize, delta: isize) {
        for name in self.nodes[i].images.keys() {
            let c = self.image_nodes.entry(name.clone()).or_default();
            *c = c.saturating_add_signed(delta);
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.count_images(i, -1);
        let gone = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        // Pods still bound to a deleted node keep waiting for it (or for their deletion).
        self.orphans.insert(name.to_string(), gone.pods);
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str) {
        match self.index.get(node) {
            Some(&i) => self.nodes[i].add_pod(info),
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    fn unplace(&mut self, uid: &str, node: &str) {
        match self.index.get(node) {
            Some(&i) => {
                self.nodes[i].remove_pod(uid);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(node) {
                    list.retain(|p| p.uid != uid);
                }
            }
        }
    }

    /// An assigned pod as the informer shows it: adds it, updates it, or confirms an
    /// assumed pod (which may have moved if someone else bound it elsewhere). Returns
    /// whether the informer shows it on this node for the first time (upstream's
    /// AssignedPodAdd, which also fires for the scheduler's own bindings).
    pub fn apply_pod(&mut self, pod: Arc<Pod>) -> bool {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return false;
        };
        let info = Arc::new(PodInfo::new_assigned(pod));
        let new = self
            .pods
            .get(&info.uid)
            .is_none_or(|old| old.assumed || old.node != node);
        self.delete_pod(&info.uid);
        self.remember(info, node, false);
        new
    }

    /// Forgets a bound or assumed pod; returns whether there was one.
    pub fn delete_pod(&mut self, uid: &str) -> bool {
        let Some(old) = self.pods.remove(uid) else {
            return false;
        };
        self.affinity_pods -= old.info.has_affinity() as usize;
        self.unplace(uid, &old.node);
        true
    }

    /// Counts the pod on `node` now, before the bind the informer will confirm.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.delete_pod(&info.uid);
        self.remember(info, node.into(), true);
    }

    /// Undoes `assume` after a failed bind; a pod the informer already confirmed stays.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.delete_pod(uid);
        }
    }

    /// Whether the pod is bound or assumed (so an informer update of the still-pending
    /// pod object must not queue it again).
    pub fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmation_keeps_one_copy() {
        let mut cache = Cache::default();
        cache.apply_node(Node::test("n1").into());
        let pod = Pod::test("p").requests("1", "1Gi");
        let info = Arc::new(PodInfo::new(Arc::new(pod.clone().into())));
        cache.assume(info, "n1");
        assert_eq!(
            cache.node("n1").unwrap().requested.milli_cpu,
            1000,
            "assumed pod counts"
        );
        cache.apply_pod(Arc::new(pod.clone().on_node("n1").into()));
        assert_eq!(
            cache.node("n1").unwrap().requested.milli_cpu,
            1000,
            "confirmation replaces"
        );
        cache.forget("uid-p");
        let mut heartbeat = Node::test("n1");
        heartbeat
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .reason = Some("KubeletReady".into());
        assert_eq!(
            cache.apply_node(heartbeat.into()),
            0,
            "a heartbeat is not a scheduling-relevant change"
        );
        assert_eq!(
            cache.apply_node(Node::test("n1").label("new", "label").into()),
            event::NODE_LABELS,
            "a new label is"
        );
        assert_eq!(
            cache.apply_node(Node::test("n1").label("new", "label").cpu("8").into()),
            event::NODE_ALLOCATABLE,
            "so is more cpu"
        );
        assert_eq!(
            cache.node("n1").unwrap().requested.pods,
            1,
            "confirmed pod is not forgotten"
        );
        cache.delete_pod("uid-p");
        assert_eq!(
            cache.node("n1").unwrap().requested,
            Resource::default(),
            "deletion frees"
        );
    }

    #[test]
    fn images_normalize_to_full_references() {
        assert_eq!(normalize_image("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize_image("foo/bar:1"), "docker.io/foo/bar:1");
        assert_eq!(
            normalize_image("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
    }
}
