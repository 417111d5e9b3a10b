//! Pod addresses: each simulated node hands out addresses from its own /24 (never
//! contacted; nothing listens on them). .0 is the network, .1 the node's bridge upstream,
//! .255 broadcast, so a node has .2 to .254: 253 pods, above the default limit of 110.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

const FIRST_HOST: u8 = 2;
const LAST_HOST: u8 = 254;

/// The /24 of a node, as its first three octets.
pub(super) type Prefix = [u8; 3];

/// Parses `a.b.c.0/24` (a node's spec.podCIDR); other shapes are not ours to use.
pub(super) fn parse_slash24(cidr: &str) -> Option<Prefix> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let [a, b, c, _] = addr.octets();
    (len == "24").then_some([a, b, c])
}

#[derive(Default)]
struct NodeAddresses {
    /// Pod key (`namespace/name`) -> (uid, host octet).
    by_pod: HashMap<String, (String, u8)>,
    used: BTreeSet<u8>,
}

/// Address bookkeeping for all simulated nodes.
#[derive(Default)]
pub(super) struct PodAddresses {
    nodes: Mutex<HashMap<String, NodeAddresses>>,
}

impl PodAddresses {
    /// The address of pod `key` (uid `uid`) on `node`. Keeps what the pod already
    /// reports when it is free and in the node's /24 (the simulator restarted); otherwise
    /// takes the lowest free one. When the /24 is full, forgets pods `live` says are gone
    /// (deleted or finished) and tries again. `None` when still full.
    pub(super) fn assign(
        &self,
        node: &str,
        prefix: Prefix,
        key: &str,
        uid: &str,
        reported: Option<&str>,
        live: impl Fn(&str, &str) -> bool,
    ) -> Option<Ipv4Addr> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let n = nodes.entry(node.to_string()).or_default();
        let ip = |host: u8| Ipv4Addr::new(prefix[0], prefix[1], prefix[2], host);
        if let Some((owner, host)) = n.by_pod.get(key) {
            if owner == uid {
                return Some(ip(*host));
            }
            // Same name, new pod (a StatefulSet replica): the old one's address is free.
            let host = *host;
            n.used.remove(&host);
            n.by_pod.remove(key);
        }
        let kept = reported
            .and_then(|r| r.parse::<Ipv4Addr>().ok())
            .filter(|a| {
                a.octets()[..3] == prefix && (FIRST_HOST..=LAST_HOST).contains(&a.octets()[3])
            })
            .map(|a| a.octets()[3])
            .filter(|h| !n.used.contains(h));
        let host = kept.or_else(|| lowest_free(&n.used)).or_else(|| {
            let gone: Vec<String> = n
                .by_pod
                .iter()
                .filter(|(k, (u, _))| !live(k, u))
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                if let Some((_, h)) = n.by_pod.remove(&k) {
                    n.used.remove(&h);
                }
            }
            lowest_free(&n.used)
        })?;
        n.used.insert(host);
        n.by_pod.insert(key.to_string(), (uid.to_string(), host));
        Some(ip(host))
    }

    /// Frees the address of pod `key` on `node` (it finished or was deleted).
    pub(super) fn release(&self, node: &str, key: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.get_mut(node) {
            if let Some((_, host)) = n.by_pod.remove(key) {
                n.used.remove(&host);
            }
        }
    }
}

fn lowest_free(used: &BTreeSet<u8>) -> Option<u8> {
    (FIRST_HOST..=LAST_HOST).find(|h| !used.contains(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Prefix = [10, 42, 1];

    fn all_live(_: &str, _: &str) -> bool {
        true
    }

    #[test]
    fn parses_only_slash_24_pod_cidrs() {
        assert_eq!(parse_slash24("10.42.7.0/24"), Some([10, 42, 7]));
        assert_eq!(parse_slash24("10.42.0.0/16"), None);
        assert_eq!(parse_slash24("fd00::/64"), None);
        assert_eq!(parse_slash24("garbage"), None);
    }

    #[test]
    fn hands_out_the_lowest_free_address_and_the_same_one_again_for_the_same_pod() {
        let a = PodAddresses::default();
        assert_eq!(
            a.assign("n", P, "ns/a", "u1", None, all_live),
            Some(Ipv4Addr::new(10, 42, 1, 2))
        );
        assert_eq!(
            a.assign("n", P, "ns/b", "u2", None, all_live),
            Some(Ipv4Addr::new(10, 42, 1, 3))
        );
        assert_eq!(
            a.assign("n", P, "ns/a", "u1", None, all_live),
            Some(Ipv4Addr::new(10, 42, 1, 2))
        );
        a.release("n", "ns/a");
        assert_eq!(
            a.assign("n", P, "ns/c", "u3", None, all_live),
            Some(Ipv4Addr::new(10, 42, 1, 2))
        );
    }

    #[test]
    fn keeps_a_reported_address_after_a_restart_unless_it_is_taken_or_foreign() {
        let a = PodAddresses::default();
        assert_eq!(
            a.assign("n", P, "ns/a", "u1", Some("10.42.1.77"), all_live),
            Some(Ipv4Addr::new(10, 42, 1, 77))
        );
        assert_eq!(
            a.assign("n", P, "ns/b", "u2", Some("10.42.1.77"), all_live),
            Some(Ipv4Addr::new(10, 42, 1, 2))
        );
        assert_eq!(
            a.assign("n", P, "ns/c", "u3", Some("10.42.9.5"), all_live),
            Some(Ipv4Addr::new(10, 42, 1, 3))
        );
    }

    #[test]
    fn a_new_pod_with_an_old_name_gets_a_fresh_assignment() {
        let a = PodAddresses::default();
        a.assign("n", P, "ns/web-0", "old", None, all_live);
        a.assign("n", P, "ns/other", "x", None, all_live);
        assert_eq!(
            a.assign("n", P, "ns/web-0", "new", None, all_live),
            Some(Ipv4Addr::new(10, 42, 1, 2))
        );
    }

    #[test]
    fn a_full_node_reclaims_addresses_of_pods_that_are_gone() {
        let a = PodAddresses::default();
        for i in 0..253 {
            assert!(
                a.assign("n", P, &format!("ns/p{i}"), "u", None, all_live)
                    .is_some(),
                "pod {i}"
            );
        }
        assert_eq!(a.assign("n", P, "ns/extra", "u", None, all_live), None);
        let got = a.assign("n", P, "ns/extra", "u", None, |key, _| key != "ns/p5");
        assert_eq!(got, Some(Ipv4Addr::new(10, 42, 1, 7)));
    }
}
