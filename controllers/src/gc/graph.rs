//! The garbage collector's object graph (who owns whom, by uid) and its pure
//! decisions: what to do with a dependent given the state of its owners, and with an
//! owner being deleted given its dependents (upstream's `garbagecollector/graph.go`,
//! `attemptToDeleteItem` and `processDeletingDependentsItem`, without the I/O).

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it: identity, owners, deletion state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    pub uid: String,
    /// Index of its resource in the collector's list of watched resources.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waiting for its blocking dependents to go.
    pub fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Whether its reference to `owner` blocks that owner's foreground deletion.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }

    fn owner_uids(&self) -> impl Iterator<Item = &str> {
        self.owners.iter().map(|o| o.uid.as_str())
    }
}

/// Every object by uid, and the dependents of every uid that is referenced as an owner
/// (whether or not that owner has been seen).
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect()
    }

    /// Dependents whose reference to `uid` has blockOwnerDeletion: those a foreground
    /// deletion of `uid` waits for.
    fn blocking_dependents<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.dependents(uid)
            .into_iter()
            .filter(move |d| d.blocks(uid))
    }

    /// For an owner waiting for its dependents: a blocking dependent that waits too and
    /// from which a chain of waiting, blocking dependents leads back to the owner. Such a
    /// circle never ends by itself (each member waits for the next), so the collector
    /// breaks it by making that dependent's reference to the owner non-blocking. With
    /// A owned by C, B by A and C by B, all deleted in the foreground: A waits for B, B
    /// for C, C for A; for A this returns B. An object owning itself returns itself.
    pub fn waiting_circle_through(&self, owner: &str) -> Option<String> {
        if !self.nodes.get(owner)?.waiting_for_dependents() {
            return None;
        }
        for first in self.blocking_dependents(owner) {
            if !first.waiting_for_dependents() {
                continue;
            }
            let mut seen = HashSet::new();
            let mut stack = vec![first.uid.as_str()];
            while let Some(uid) = stack.pop() {
                if uid == owner {
                    return Some(first.uid.clone());
                }
                if seen.insert(uid) {
                    stack.extend(
                        self.blocking_dependents(uid)
                            .filter(|d| d.waiting_for_dependents())
                            .map(|d| d.uid.as_str()),
                    );
                }
            }
        }
        None
    }

    /// Uids of every node of one resource (to drop those a relist no longer has).
    pub fn uids_of(&self, resource: usize) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.resource == resource)
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Adds or updates a node; returns the uids whose decisions may have changed:
    /// the node, its owners before and after, and its dependents if it is deleting.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let mut dirty = vec![node.uid.clone()];
        if let Some(old) = self.nodes.get(&node.uid) {
            for owner in old.owner_uids() {
                dirty.push(owner.to_string());
                if let Some(set) = self.dependents.get_mut(owner) {
                    set.remove(&node.uid);
                }
            }
        }
        for owner in node.owner_uids() {
            dirty.push(owner.to_string());
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(node.uid.clone());
        }
        if node.deleting {
            dirty.extend(
                self.dependents
                    .get(&node.uid)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        self.dependents.retain(|_, set| !set.is_empty());
        self.nodes.insert(node.uid.clone(), node);
        dirty
    }

    /// Removes a node that is gone; returns its owners (one fewer dependent to wait
    /// for) and its dependents (one owner gone).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut dirty = Vec::new();
        for owner in old.owner_uids() {
            dirty.push(owner.to_string());
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(uid);
            }
        }
        dirty.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        self.dependents.retain(|_, set| !set.is_empty());
        dirty
    }
}

/// An owner as a dependent's reference finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not being deleted in the foreground.
    Present,
    /// No object with that name and uid exists.
    Gone,
    /// Exists and is being deleted in the foreground (waits for its dependents).
    WaitingForDependents,
}

/// What to do with a dependent.
#[derive(Debug, PartialEq, Eq)]
pub enum DependentStep {
    Nothing,
    /// Every owner is gone or deleting in the foreground: delete it; in the foreground
    /// when an owner waits for it and it has dependents of its own to remove first.
    Delete {
        foreground: bool,
    },
    /// Some owners remain: drop only the references to the gone or waiting ones.
    DropOwners(Vec<String>),
}

/// Upstream's rule: owners that exist ("solid") keep a dependent alive; references to
/// gone owners ("dangling") and to owners deleting in the foreground are dropped from
/// it then; with no solid owner left it is deleted.
pub fn dependent_step(
    owners: &[(&OwnerReference, OwnerState)],
    has_dependents: bool,
) -> DependentStep {
    if owners.is_empty() {
        return DependentStep::Nothing;
    }
    let solid = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Present)
        .count();
    let drop: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s != OwnerState::Present)
        .map(|(o, _)| o.uid.clone())
        .collect();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if drop.is_empty() {
        DependentStep::Nothing
    } else if solid > 0 {
        DependentStep::DropOwners(drop)
    } else {
        DependentStep::Delete {
            foreground: waiting && has_dependents,
        }
    }
}

/// What to do with an owner being deleted.
#[derive(Debug, PartialEq, Eq)]
pub enum OwnerStep {
    Nothing,
    /// `orphan`: remove the references to it from these dependents, then the finalizer.
    Orphan {
        dependents: Vec<String>,
    },
    /// `foregroundDeletion`: look at (delete) these dependents; remove the finalizer
    /// once no dependent blocks the owner's deletion any more.
    Foreground {
        dependents: Vec<String>,
        remove_finalizer: bool,
    },
}

pub fn owner_step(owner: &Node, dependents: &[&Node]) -> OwnerStep {
    if !owner.deleting {
        return OwnerStep::Nothing;
    }
    if owner.has_finalizer(ORPHAN) {
        return OwnerStep::Orphan {
            dependents: dependents.iter().map(|d| d.uid.clone()).collect(),
        };
    }
    if owner.has_finalizer(FOREGROUND) {
        let blocking = dependents.iter().any(|d| d.blocks(&owner.uid));
        return OwnerStep::Foreground {
            dependents: dependents
                .iter()
                .filter(|d| !d.deleting)
                .map(|d| d.uid.clone())
                .collect(),
            remove_finalizer: !blocking,
        };
    }
    OwnerStep::Nothing
}

/// The owner references left after dropping some owners.
pub fn without_owners(refs: &[OwnerReference], drop: &[String]) -> Vec<OwnerReference> {
    refs.iter()
        .filter(|r| !drop.contains(&r.uid))
        .cloned()
        .collect()
}

/// The owner references with blockOwnerDeletion turned off: `only` that owner's, or
/// (with `None`) every one, as upstream does to a dependent it deletes in the
/// foreground while one of its own dependents already waits (a likely circle).
pub fn unblocked(refs: &[OwnerReference], only: Option<&str>) -> Vec<OwnerReference> {
    refs.iter()
        .map(|r| {
            let mut r = r.clone();
            if r.block_owner_deletion == Some(true) && only.is_none_or(|u| u == r.uid) {
                r.block_owner_deletion = Some(false);
            }
            r
        })
        .collect()
}

pub fn without_finalizer(finalizers: &[String], f: &str) -> Vec<String> {
    finalizers.iter().filter(|x| *x != f).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn node(uid: &str) -> Node {
        Node {
            uid: uid.into(),
            name: uid.into(),
            ..Default::default()
        }
    }

    fn owned_by(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            owners: owners.iter().map(|(o, b)| owner_ref(o, *b)).collect(),
            ..node(uid)
        }
    }

    fn deleting(mut n: Node, finalizers: &[&str]) -> Node {
        n.deleting = true;
        n.finalizers = finalizers.iter().map(|s| s.to_string()).collect();
        n
    }

    #[test]
    fn dependent_decisions_follow_owner_states() {
        let (a, b) = (owner_ref("a", false), owner_ref("b", true));
        use OwnerState::*;
        type Case<'a> = (
            &'a str,
            Vec<(&'a OwnerReference, OwnerState)>,
            bool,
            DependentStep,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "no_owners_is_left_alone",
                vec![],
                false,
                DependentStep::Nothing,
            ),
            (
                "present_owner_keeps_it",
                vec![(&a, Present)],
                false,
                DependentStep::Nothing,
            ),
            (
                "only_owner_gone_deletes_in_background",
                vec![(&a, Gone)],
                false,
                DependentStep::Delete { foreground: false },
            ),
            (
                "all_owners_gone_deletes",
                vec![(&a, Gone), (&b, Gone)],
                true,
                DependentStep::Delete { foreground: false },
            ),
            (
                "one_of_two_gone_drops_that_reference",
                vec![(&a, Present), (&b, Gone)],
                false,
                DependentStep::DropOwners(vec!["b".into()]),
            ),
            (
                "waiting_owner_deletes_a_leaf_in_background",
                vec![(&b, WaitingForDependents)],
                false,
                DependentStep::Delete { foreground: false },
            ),
            (
                "waiting_owner_deletes_a_parent_in_foreground",
                vec![(&b, WaitingForDependents)],
                true,
                DependentStep::Delete { foreground: true },
            ),
            (
                "waiting_owner_with_a_solid_one_drops_the_waiting_reference",
                vec![(&a, Present), (&b, WaitingForDependents)],
                false,
                DependentStep::DropOwners(vec!["b".into()]),
            ),
        ];
        for (name, owners, has_dependents, want) in cases {
            assert_eq!(dependent_step(&owners, has_dependents), want, "{name}");
        }
    }

    #[test]
    fn an_owner_not_being_deleted_needs_nothing() {
        let dep = owned_by("d", &[("o", true)]);
        assert_eq!(owner_step(&node("o"), &[&dep]), OwnerStep::Nothing);
    }

    #[test]
    fn an_orphaning_owner_releases_every_dependent() {
        let (d1, d2) = (
            owned_by("d1", &[("o", true)]),
            owned_by("d2", &[("o", false)]),
        );
        let step = owner_step(&deleting(node("o"), &[ORPHAN]), &[&d1, &d2]);
        assert_eq!(
            step,
            OwnerStep::Orphan {
                dependents: vec!["d1".into(), "d2".into()]
            }
        );
    }

    #[test]
    fn a_foreground_owner_waits_while_a_blocking_dependent_remains() {
        let blocking = owned_by("d1", &[("o", true)]);
        let step = owner_step(&deleting(node("o"), &[FOREGROUND]), &[&blocking]);
        assert_eq!(
            step,
            OwnerStep::Foreground {
                dependents: vec!["d1".into()],
                remove_finalizer: false
            }
        );
    }

    #[test]
    fn a_foreground_owner_is_released_when_only_non_blocking_dependents_remain() {
        let free = owned_by("d1", &[("o", false)]);
        let step = owner_step(&deleting(node("o"), &[FOREGROUND]), &[&free]);
        assert_eq!(
            step,
            OwnerStep::Foreground {
                dependents: vec!["d1".into()],
                remove_finalizer: true
            }
        );
        let step = owner_step(&deleting(node("o"), &[FOREGROUND]), &[]);
        assert_eq!(
            step,
            OwnerStep::Foreground {
                dependents: vec![],
                remove_finalizer: true
            }
        );
    }

    #[test]
    fn dependents_already_deleting_are_not_deleted_again_but_still_block() {
        let dying = deleting(owned_by("d1", &[("o", true)]), &[FOREGROUND]);
        let step = owner_step(&deleting(node("o"), &[FOREGROUND]), &[&dying]);
        assert_eq!(
            step,
            OwnerStep::Foreground {
                dependents: vec![],
                remove_finalizer: false
            }
        );
    }

    #[test]
    fn the_graph_indexes_dependents_by_owner_uid_and_reports_what_changed() {
        let mut g = Graph::default();
        g.upsert(node("o"));
        let dirty = g.upsert(owned_by("d", &[("o", true)]));
        assert!(
            dirty.contains(&"d".to_string()) && dirty.contains(&"o".to_string()),
            "{dirty:?}"
        );
        assert_eq!(
            g.dependents("o")
                .iter()
                .map(|n| n.uid.as_str())
                .collect::<Vec<_>>(),
            vec!["d"]
        );
        let dirty = g.upsert(deleting(node("o"), &[ORPHAN]));
        assert!(
            dirty.contains(&"d".to_string()),
            "a deleting owner's dependents are rechecked: {dirty:?}"
        );
        // The dependent loses its reference: the owner has no dependents left.
        let dirty = g.upsert(node("d"));
        assert!(dirty.contains(&"o".to_string()), "{dirty:?}");
        assert!(g.dependents("o").is_empty());
    }

    #[test]
    fn removing_an_owner_rechecks_its_dependents_and_removing_a_dependent_its_owners() {
        let mut g = Graph::default();
        g.upsert(node("o"));
        g.upsert(owned_by("d", &[("o", true)]));
        assert_eq!(g.remove("o"), vec!["d".to_string()]);
        assert_eq!(g.remove("d"), vec!["o".to_string()]);
        assert!(g.remove("d").is_empty(), "removing twice changes nothing");
    }

    #[test]
    fn a_circle_of_objects_waiting_for_each_other_is_found_from_any_member() {
        type Case<'a> = (&'a str, Vec<Node>, &'a str, Option<&'a str>);
        let fg = |n: Node| deleting(n, &[FOREGROUND]);
        let cases: Vec<Case<'_>> = vec![
            (
                "three_waiting_in_a_circle",
                vec![
                    fg(owned_by("a", &[("c", true)])),
                    fg(owned_by("b", &[("a", true)])),
                    fg(owned_by("c", &[("b", true)])),
                ],
                "a",
                Some("b"),
            ),
            (
                "an_object_owning_itself",
                vec![fg(owned_by("a", &[("a", true)]))],
                "a",
                Some("a"),
            ),
            (
                "a_chain_that_ends_is_no_circle",
                vec![
                    fg(node("a")),
                    fg(owned_by("b", &[("a", true)])),
                    fg(owned_by("c", &[("b", true)])),
                ],
                "a",
                None,
            ),
            (
                "a_member_not_deleting_can_still_go",
                vec![
                    fg(owned_by("a", &[("c", true)])),
                    owned_by("b", &[("a", true)]),
                    fg(owned_by("c", &[("b", true)])),
                ],
                "a",
                None,
            ),
            (
                "a_non_blocking_reference_breaks_the_circle",
                vec![
                    fg(owned_by("a", &[("c", true)])),
                    fg(owned_by("b", &[("a", true)])),
                    fg(owned_by("c", &[("b", false)])),
                ],
                "a",
                None,
            ),
            (
                "an_owner_not_waiting_has_no_circle",
                vec![owned_by("a", &[("a", true)])],
                "a",
                None,
            ),
        ];
        for (name, nodes, owner, want) in cases {
            let mut g = Graph::default();
            for n in nodes {
                g.upsert(n);
            }
            assert_eq!(g.waiting_circle_through(owner).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn unblocking_turns_off_block_owner_deletion_for_one_owner_or_all() {
        let refs = vec![
            owner_ref("a", true),
            owner_ref("b", true),
            owner_ref("c", false),
        ];
        let blocking = |refs: &[OwnerReference]| {
            refs.iter()
                .filter(|r| r.block_owner_deletion == Some(true))
                .map(|r| r.uid.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(blocking(&unblocked(&refs, Some("a"))), vec!["b"]);
        assert!(blocking(&unblocked(&refs, None)).is_empty());
        assert_eq!(unblocked(&refs, None).len(), 3, "no reference is dropped");
    }

    #[test]
    fn dropping_owners_and_finalizers_keeps_the_rest() {
        let refs = vec![owner_ref("a", false), owner_ref("b", true)];
        assert_eq!(
            without_owners(&refs, &["a".into()]),
            vec![owner_ref("b", true)]
        );
        let f = vec![ORPHAN.to_string(), "x".to_string()];
        assert_eq!(without_finalizer(&f, ORPHAN), vec!["x".to_string()]);
    }
}
