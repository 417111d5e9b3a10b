//! Which nodes a DaemonSet runs on, and the pod it puts there (upstream
//! NodeShouldRunDaemonPod, AddOrUpdateDaemonPodTolerations, CreatePodTemplate and
//! ReplaceDaemonSetPodNodeNameNodeAffinity). The selector, affinity and toleration
//! matching is the shared one the scheduler uses too, so both agree on what fits.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};

use crate::shared::scheduling::{node_selection_matches, tolerated};

/// The pod label naming the ControllerRevision a daemon pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The pod label carrying the DaemonSet's template generation (deprecated upstream,
/// still written and honoured).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation upstream's apiserver keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Tolerations every daemon pod gets, so node conditions neither keep it off a node
/// nor evict it: a node agent must keep running on a sick node.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

/// Adds the daemon tolerations to `spec`. One the user already wrote with the same key,
/// operator, value and effect is replaced (upstream drops its tolerationSeconds too).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for want in daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == want.key
                && t.operator.as_deref().unwrap_or("Equal")
                    == want.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == want.value.as_deref().unwrap_or("")
                && t.effect.as_deref().unwrap_or("") == want.effect.as_deref().unwrap_or("")
        };
        match list.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = want,
            None => list.push(want),
        }
    }
}

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A pod should run here (and be created if missing).
    pub should_run: bool,
    /// A pod already here may keep running (a NoSchedule taint added after it started
    /// does not evict it; NoExecute does).
    pub should_continue: bool,
}

/// The daemon pod as it would run on `node`: the template with the daemon tolerations
/// and `spec.nodeName` set (upstream NewPod), used only to judge eligibility.
fn pod_for(ds: &DaemonSet, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.node_name = Some(node.into());
    Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: Some(spec),
        status: None,
    }
}

/// The first taint passing `effects` that no toleration tolerates.
fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerated(tolerations, t))
}

/// Upstream NodeShouldRunDaemonPod. A pinned template `nodeName` must name this node;
/// nodeSelector and required node affinity must match; NoSchedule and NoExecute taints
/// must be tolerated (with the daemon tolerations). `spec.unschedulable` is ignored: a
/// cordoned node still runs its daemons. Node readiness is not looked at either.
pub fn node_fit(node: &Node, ds: &DaemonSet) -> Fit {
    let never = Fit {
        should_run: false,
        should_continue: false,
    };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let pinned = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref());
    if pinned.is_some_and(|n| !n.is_empty() && n != name) {
        return never;
    }
    let pod = pod_for(ds, name);
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !node_selection_matches(pod.spec.as_ref(), &labels, name) {
        return never;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    if untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]).is_none() {
        return Fit {
            should_run: true,
            should_continue: true,
        };
    }
    Fit {
        should_run: false,
        should_continue: untolerated(taints, tolerations, &["NoExecute"]).is_none(),
    }
}

/// The DaemonSet's template generation: upstream's apiserver keeps it in an annotation;
/// kybern's does not, so pods are labelled with `metadata.generation` instead (it moves
/// whenever the template does). Only the annotation counts when judging whether a pod
/// is up to date; the revision hash decides otherwise.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// The template daemon pods are created from: the DaemonSet's, with the daemon
/// tolerations and the revision-hash and template-generation labels.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_daemon_tolerations(t.spec.get_or_insert_with(Default::default));
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    if let Some(generation) = template_generation(ds).or(ds.metadata.generation) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    }
    t
}

/// Pins a daemon pod to `node` with required node affinity `metadata.name In [node]`,
/// replacing any required terms (the controller already checked them against this
/// node), so the default scheduler binds it there while still checking resources.
pub fn pin_to_node(template: &PodTemplateSpec, node: &str) -> PodTemplateSpec {
    let mut t = template.clone();
    let spec = t.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
    t
}

/// The node a daemon pod is on or meant for: `spec.nodeName` once bound, else the
/// node its pinning affinity names (upstream GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find_map(
            |r| match (r.key.as_str(), r.operator.as_str(), r.values.as_deref()) {
                ("metadata.name", "In", Some([node])) => Some(node.as_str()),
                _ => None,
            },
        )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;

    use super::*;
    use crate::daemonset::fixtures::*;
    use crate::fixtures::NodeFixture;

    #[test]
    fn nodes_are_eligible_by_selector_affinity_and_taints_like_upstream() {
        let run = Fit {
            should_run: true,
            should_continue: true,
        };
        let stay = Fit {
            should_run: false,
            should_continue: true,
        };
        let never = Fit {
            should_run: false,
            should_continue: false,
        };
        let cases: Vec<(&str, Node, DaemonSet, Fit)> = vec![
            (
                "a plain node runs it",
                Node::test("n1"),
                daemon_set("ds"),
                run,
            ),
            (
                "nodeSelector matches",
                Node::test("n1").label("disk", "ssd"),
                daemon_set("ds").node_selector("disk", "ssd"),
                run,
            ),
            (
                "nodeSelector misses",
                Node::test("n1").label("disk", "hdd"),
                daemon_set("ds").node_selector("disk", "ssd"),
                never,
            ),
            (
                "required affinity matches",
                Node::test("n1").label("zone", "a"),
                daemon_set("ds").node_affinity("zone", "In", &["a", "b"]),
                run,
            ),
            (
                "required affinity misses",
                Node::test("n1").label("zone", "c"),
                daemon_set("ds").node_affinity("zone", "In", &["a", "b"]),
                never,
            ),
            (
                "template nodeName elsewhere",
                Node::test("n1"),
                daemon_set("ds").node_name("n2"),
                never,
            ),
            (
                "template nodeName here",
                Node::test("n1"),
                daemon_set("ds").node_name("n1"),
                run,
            ),
            (
                "untolerated NoSchedule: no new pod, old one stays",
                Node::test("n1").taint("gpu", "true", "NoSchedule"),
                daemon_set("ds"),
                stay,
            ),
            (
                "untolerated NoExecute: none at all",
                Node::test("n1").taint("gpu", "true", "NoExecute"),
                daemon_set("ds"),
                never,
            ),
            (
                "PreferNoSchedule is ignored",
                Node::test("n1").taint("gpu", "true", "PreferNoSchedule"),
                daemon_set("ds"),
                run,
            ),
            (
                "tolerated NoSchedule",
                Node::test("n1").taint("gpu", "true", "NoSchedule"),
                daemon_set("ds").toleration("gpu", "Equal", "true", "NoSchedule"),
                run,
            ),
            (
                "toleration for another value",
                Node::test("n1").taint("gpu", "true", "NoSchedule"),
                daemon_set("ds").toleration("gpu", "Equal", "false", "NoSchedule"),
                stay,
            ),
            (
                "Exists tolerates every value",
                Node::test("n1").taint("gpu", "x", "NoExecute"),
                daemon_set("ds").toleration("gpu", "Exists", "", ""),
                run,
            ),
            (
                "cordoned nodes still run daemons",
                Node::test("n1").unschedulable(),
                daemon_set("ds"),
                run,
            ),
            (
                "unschedulable taint is tolerated automatically",
                Node::test("n1").taint("node.kubernetes.io/unschedulable", "", "NoSchedule"),
                daemon_set("ds"),
                run,
            ),
            (
                "not-ready NoExecute is tolerated automatically",
                Node::test("n1")
                    .not_ready()
                    .taint("node.kubernetes.io/not-ready", "", "NoExecute"),
                daemon_set("ds"),
                run,
            ),
            (
                "unreachable NoExecute is tolerated automatically",
                Node::test("n1").taint("node.kubernetes.io/unreachable", "", "NoExecute"),
                daemon_set("ds"),
                run,
            ),
            (
                "memory pressure is tolerated automatically",
                Node::test("n1").taint("node.kubernetes.io/memory-pressure", "", "NoSchedule"),
                daemon_set("ds"),
                run,
            ),
            (
                "network-unavailable without hostNetwork",
                Node::test("n1").taint("node.kubernetes.io/network-unavailable", "", "NoSchedule"),
                daemon_set("ds"),
                stay,
            ),
            (
                "network-unavailable with hostNetwork",
                Node::test("n1").taint("node.kubernetes.io/network-unavailable", "", "NoSchedule"),
                daemon_set("ds").host_network(),
                run,
            ),
        ];
        for (name, node, ds, want) in cases {
            assert_eq!(node_fit(&node, &ds), want, "{name}");
        }
    }

    #[test]
    fn daemon_tolerations_replace_identical_ones_and_keep_the_rest() {
        let mut spec = PodSpec {
            tolerations: Some(vec![
                Toleration {
                    key: Some("node.kubernetes.io/not-ready".into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(300),
                    ..Default::default()
                },
                Toleration {
                    key: Some("gpu".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        add_daemon_tolerations(&mut spec);
        let list = spec.tolerations.unwrap();
        assert_eq!(
            list.len(),
            7,
            "six daemon tolerations plus the user's gpu one: {list:?}"
        );
        assert_eq!(
            list[0].toleration_seconds, None,
            "the identical not-ready toleration is replaced"
        );
        assert_eq!(list[1].key.as_deref(), Some("gpu"));
    }

    #[test]
    fn pods_are_labelled_and_pinned_to_their_node() {
        let mut ds = daemon_set("ds");
        ds.metadata.generation = Some(3);
        let t = pin_to_node(&pod_template(&ds, "abc"), "n7");
        let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels[REVISION_HASH_LABEL], "abc");
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "3");
        assert_eq!(labels["app"], "web", "template labels are kept");
        let pinned = Pod {
            spec: t.spec,
            ..Default::default()
        };
        assert_eq!(
            target_node(&pinned),
            Some("n7"),
            "the pinned node is the target before binding"
        );
        let bound = pod("p").on_node("n8");
        assert_eq!(target_node(&bound), Some("n8"), "nodeName wins once bound");
    }

    #[test]
    fn pinning_replaces_required_terms_and_matches_only_that_node_in_the_scheduler() {
        let ds = daemon_set("ds").node_affinity("zone", "In", &["a"]);
        let t = pin_to_node(&pod_template(&ds, "h"), "n1");
        let pod = Pod {
            spec: t.spec,
            ..Default::default()
        };
        let labels = Default::default();
        assert!(
            node_selection_matches(pod.spec.as_ref(), &labels, "n1"),
            "the pinned node matches even without the zone label"
        );
        assert!(
            !node_selection_matches(pod.spec.as_ref(), &labels, "n2"),
            "no other node matches"
        );
    }
}
