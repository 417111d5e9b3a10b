//! InterPodAffinity: the pod's required affinity and anti-affinity to pods in the same
//! topology domain, and existing pods' required anti-affinity against the pod. Counts
//! per (topologyKey, value) are computed once per pod (upstream's PreFilter), so each
//! node is an O(terms) lookup.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;

pub use crate::cache::NamespaceLabels;
use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterResult, StateData, Status};
use controllers::shared::labels::{selector_matches, Labels};

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

type Counts = HashMap<(String, String), i64>;

/// Whether `target` is selected by `term`, which belongs to a pod in `owner_ns`.
/// A term selects pods in the namespaces it lists or whose labels its
/// namespaceSelector matches (an empty selector matches every namespace); with
/// neither, the owner's namespace (upstream `GetNamespacesFromPodAffinityTerm` and
/// `mergeAffinityTermNamespacesIfNotEmpty`).
pub fn term_matches(
    term: &PodAffinityTerm,
    owner_ns: &str,
    target: &PodInfo,
    namespaces: &NamespaceLabels,
) -> bool {
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let ns_ok = match &term.namespace_selector {
        None if listed.is_empty() => target.namespace == owner_ns,
        None => listed.contains(&target.namespace),
        Some(sel) => {
            listed.contains(&target.namespace)
                || selector_matches(
                    Some(sel),
                    namespaces.get(&target.namespace).unwrap_or(&Labels::new()),
                )
        }
    };
    ns_ok && selector_matches(term.label_selector.as_ref(), &target.labels)
}

fn pair(term: &PodAffinityTerm, node: &NodeInfo) -> Option<(String, String)> {
    let v = node.labels.get(&term.topology_key)?;
    Some((term.topology_key.clone(), v.clone()))
}

#[derive(Clone, Default)]
pub struct AffinityState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
    /// The pod matches all its own required affinity terms (it may start a group).
    self_affine: bool,
}

/// Adds `delta` to a domain's count; a domain whose count falls to zero is dropped, so an
/// empty `affinity` still means "no pod anywhere matches".
fn bump(counts: &mut Counts, key: (String, String), delta: i64) {
    match counts.entry(key) {
        Entry::Occupied(mut e) => {
            *e.get_mut() += delta;
            if *e.get() <= 0 {
                e.remove();
            }
        }
        Entry::Vacant(e) => {
            if delta > 0 {
                e.insert(delta);
            }
        }
    }
}

impl AffinityState {
    pub fn new(pod: &PodInfo, cache: &Cache) -> AffinityState {
        let (nodes, namespaces) = (cache.nodes(), &cache.namespaces);
        let mut s = AffinityState {
            self_affine: pod
                .required_affinity()
                .iter()
                .all(|t| term_matches(t, &pod.namespace, pod, namespaces)),
            ..Default::default()
        };
        let own = !pod.required_affinity().is_empty() || !pod.required_anti_affinity().is_empty();
        for node in nodes {
            // Only pods with terms can repel the pod; all pods matter only for its own terms.
            let existing_pods = if own { &node.pods } else { &node.affinity_pods };
            for existing in existing_pods {
                s.update(pod, existing, node, namespaces, 1);
            }
        }
        s
    }

    /// Counts `existing` on `node` in (`delta` 1) or out (-1) of the state of `pod`:
    /// upstream's AddPod/RemovePod, which preemption uses to judge a node without its
    /// victims.
    pub fn update(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    ) {
        for term in existing.required_anti_affinity() {
            if term_matches(term, &existing.namespace, pod, namespaces) {
                if let Some(p) = pair(term, node) {
                    bump(&mut self.existing_anti, p, delta);
                }
            }
        }
        if existing.uid == pod.uid {
            return;
        }
        let all = !pod.required_affinity().is_empty()
            && pod
                .required_affinity()
                .iter()
                .all(|t| term_matches(t, &pod.namespace, existing, namespaces));
        if all {
            for term in pod.required_affinity() {
                if let Some(p) = pair(term, node) {
                    bump(&mut self.affinity, p, delta);
                }
            }
        }
        for term in pod.required_anti_affinity() {
            if term_matches(term, &pod.namespace, existing, namespaces) {
                if let Some(p) = pair(term, node) {
                    bump(&mut self.anti, p, delta);
                }
            }
        }
    }
}

impl StateData for AffinityState {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }

    fn update(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &NodeInfo,
        namespaces: &NamespaceLabels,
        delta: i64,
    ) {
        AffinityState::update(self, pod, existing, node, namespaces, delta);
    }
}

fn count(c: &Counts, term: &PodAffinityTerm, node: &NodeInfo) -> i64 {
    pair(term, node)
        .and_then(|p| c.get(&p).copied())
        .unwrap_or(0)
}

pub fn filter(state: &CycleState, node: &NodeInfo) -> FilterResult {
    // A profile without this plugin's PreFilter: judge as if nothing were counted.
    let none;
    let s = match state.read::<AffinityState>() {
        Some(s) => s,
        None => {
            none = AffinityState::default();
            &none
        }
    };
    let pod = &state.pod;
    let affinity_ok = pod
        .required_affinity()
        .iter()
        .all(|t| node.labels.contains_key(&t.topology_key) && count(&s.affinity, t, node) > 0);
    // The first pod of a group that is affine to itself may go anywhere with the keys.
    let first_of_group = s.affinity.is_empty()
        && pod
            .required_affinity()
            .iter()
            .all(|t| node.labels.contains_key(&t.topology_key))
        && s.self_affine;
    if !affinity_ok && !first_of_group {
        return Err(Status::unresolvable(AFFINITY));
    }
    if pod
        .required_anti_affinity()
        .iter()
        .any(|t| count(&s.anti, t, node) > 0)
    {
        return Err(Status::unschedulable(ANTI_AFFINITY));
    }
    if s.existing_anti
        .iter()
        .any(|((k, v), c)| *c > 0 && node.labels.get(k) == Some(v))
    {
        return Err(Status::unschedulable(EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::filters::fixtures::{check, cluster};
    use controllers::fixtures::{NodeFixture, PodFixture};

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    #[test]
    fn required_affinity_and_anti_affinity_follow_topology() {
        let cache = cluster(
            vec![
                Node::test("a1").label(ZONE, "a"),
                Node::test("a2").label(ZONE, "a"),
                Node::test("b1").label(ZONE, "b"),
                Node::test("nozone"),
            ],
            vec![
                Pod::test("db").on_node("a1").label("app", "db"),
                Pod::test("loner")
                    .on_node("b1")
                    .label("app", "loner")
                    .anti_affinity_to("app", "web", HOST),
            ],
        );
        let cases = [
            (
                "affinity: same zone as db",
                Pod::test("p").affinity_to("app", "db", ZONE),
                "a2",
                None,
            ),
            (
                "affinity: other zone",
                Pod::test("p").affinity_to("app", "db", ZONE),
                "b1",
                Some(AFFINITY),
            ),
            (
                "affinity: node lacks key",
                Pod::test("p").affinity_to("app", "db", ZONE),
                "nozone",
                Some(AFFINITY),
            ),
            (
                "affinity: first of a self-affine group",
                Pod::test("p")
                    .label("app", "cache")
                    .affinity_to("app", "cache", ZONE),
                "b1",
                None,
            ),
            (
                "affinity: no match and not self-affine",
                Pod::test("p").affinity_to("app", "cache", ZONE),
                "b1",
                Some(AFFINITY),
            ),
            (
                "anti-affinity: zone with db",
                Pod::test("p").anti_affinity_to("app", "db", ZONE),
                "a2",
                Some(ANTI_AFFINITY),
            ),
            (
                "anti-affinity: other zone",
                Pod::test("p").anti_affinity_to("app", "db", ZONE),
                "b1",
                None,
            ),
            (
                "anti-affinity: per host",
                Pod::test("p").anti_affinity_to("app", "db", HOST),
                "a2",
                None,
            ),
            (
                "existing anti-affinity repels web",
                Pod::test("p").label("app", "web"),
                "b1",
                Some(EXISTING_ANTI_AFFINITY),
            ),
            (
                "existing anti-affinity only on its host",
                Pod::test("p").label("app", "web"),
                "a1",
                None,
            ),
            (
                "existing anti-affinity ignores others",
                Pod::test("p").label("app", "api"),
                "b1",
                None,
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }

    fn in_namespace(mut p: Pod, ns: &str) -> Pod {
        p.metadata.namespace = Some(ns.into());
        p.metadata.uid = Some(format!("uid-{ns}-{}", p.metadata.name.as_deref().unwrap()));
        p
    }

    /// Anti-affinity to app=db with the term's namespaces / namespaceSelector set.
    fn anti_db(namespaces: Option<&[&str]>, selector: Option<(&str, &str)>) -> Pod {
        let mut p = Pod::test("p").anti_affinity_to("app", "db", HOST);
        let term = &mut p
            .spec
            .as_mut()
            .unwrap()
            .affinity
            .as_mut()
            .unwrap()
            .pod_anti_affinity
            .as_mut()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_mut()
            .unwrap()[0];
        term.namespaces = namespaces.map(|n| n.iter().map(|s| s.to_string()).collect());
        term.namespace_selector = selector.map(|(k, v)| LabelSelector {
            match_labels: (!k.is_empty()).then(|| [(k.to_string(), v.to_string())].into()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn terms_select_namespaces_by_list_and_by_namespace_selector() {
        let mut cache = cluster(
            vec![Node::test("prod-node"), Node::test("dev-node")],
            vec![
                in_namespace(
                    Pod::test("db").on_node("prod-node").label("app", "db"),
                    "prod",
                ),
                in_namespace(
                    Pod::test("db").on_node("dev-node").label("app", "db"),
                    "dev",
                ),
            ],
        );
        cache.namespaces.insert(
            "prod".into(),
            [("env".to_string(), "prod".to_string())].into(),
        );
        cache.namespaces.insert(
            "dev".into(),
            [("env".to_string(), "dev".to_string())].into(),
        );
        let cases = [
            (
                "no list, no selector: own namespace only",
                anti_db(None, None),
                "prod-node",
                None,
            ),
            (
                "listed namespace",
                anti_db(Some(&["prod"]), None),
                "prod-node",
                Some(ANTI_AFFINITY),
            ),
            (
                "unlisted namespace",
                anti_db(Some(&["prod"]), None),
                "dev-node",
                None,
            ),
            (
                "selector matches prod",
                anti_db(None, Some(("env", "prod"))),
                "prod-node",
                Some(ANTI_AFFINITY),
            ),
            (
                "selector does not match dev",
                anti_db(None, Some(("env", "prod"))),
                "dev-node",
                None,
            ),
            (
                "empty selector: every namespace",
                anti_db(None, Some(("", ""))),
                "dev-node",
                Some(ANTI_AFFINITY),
            ),
            (
                "list and selector are ORed",
                anti_db(Some(&["dev"]), Some(("env", "prod"))),
                "dev-node",
                Some(ANTI_AFFINITY),
            ),
        ];
        for (name, pod, node, want) in cases {
            assert_eq!(check(filter, pod, &cache, node).as_deref(), want, "{name}");
        }
    }
}
