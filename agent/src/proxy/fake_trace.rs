//! A packet tracer over the nft text the proxy writes (tests only), in the spirit of
//! kube-proxy's nftables unit-test tracer: it follows a packet through the hooked chains in
//! the kernel's order, walking our own rule grammar (verdict maps, `numgen` → every branch,
//! jump/goto/return, dnat, the masquerade mark, reject/drop, `fib saddr type local`, sets),
//! and reports every way the packet can end.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use super::render::contains;
use crate::network::ipam::Cidr;

/// The table as a full sync's text leaves it.
#[derive(Debug, Default)]
pub(super) struct Ruleset {
    chains: BTreeMap<String, Vec<String>>,
    /// Set or map → elements (key, value text; empty for sets).
    sets: BTreeMap<String, Vec<(String, String)>>,
}

impl Ruleset {
    /// Applies nft text the way the kernel would (flushes and deletes included).
    pub(super) fn load(text: &str) -> Self {
        let mut r = Ruleset::default();
        for line in text.lines() {
            let w: Vec<&str> = line.splitn(6, ' ').collect();
            let (verb, kind) = (w[0], w[1]);
            let name = w.get(4).copied().unwrap_or_default().to_string();
            let rest = w.get(5).copied().unwrap_or_default();
            match (verb, kind) {
                ("add", "chain") => {
                    r.chains.entry(name).or_default();
                }
                ("flush", "chain") => r.chains.entry(name).or_default().clear(),
                ("delete", "chain") => {
                    r.chains.remove(&name);
                }
                ("add", "rule") => r.chains.entry(name).or_default().push(rest.to_string()),
                ("add", "set") | ("add", "map") => {
                    r.sets.entry(name).or_default();
                }
                ("flush", "set") | ("flush", "map") => r.sets.entry(name).or_default().clear(),
                ("add", "element") => {
                    let inner = rest.trim().trim_start_matches('{').trim_end_matches('}');
                    let (key, value) = inner.split_once(" : ").unwrap_or((inner, ""));
                    let key = strip_comment(key).trim().to_string();
                    r.sets
                        .entry(name)
                        .or_default()
                        .push((key, value.trim().to_string()));
                }
                _ => {}
            }
        }
        r
    }
}

fn strip_comment(text: &str) -> &str {
    text.split(" comment ").next().unwrap_or(text)
}

#[derive(Debug, Clone)]
pub(super) struct Packet {
    pub(super) saddr: Ipv4Addr,
    pub(super) daddr: Ipv4Addr,
    pub(super) proto: &'static str,
    pub(super) dport: u16,
    /// The source is an address of this host (`fib saddr type local`).
    pub(super) local_source: bool,
    /// Affinity sets that already hold the source address.
    pub(super) affinity: BTreeSet<String>,
}

/// One way a packet can end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum End {
    /// Delivered (to `daddr`, rewritten when DNAT happened), with or without the mark.
    Pass {
        to: SocketAddrV4,
        masquerade: bool,
    },
    Reject,
    Drop,
}

/// Where the packet comes from: another host or a pod (prerouting), or this host (output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum From {
    Outside,
    ThisHost,
}

#[derive(Debug, Clone)]
struct State {
    pkt: Packet,
    masq: bool,
    dnat: Option<SocketAddrV4>,
}

enum Flow {
    Continue,
    Accept,
    Drop,
    Reject,
}

/// Every way `pkt` can end after the hooks it passes; `local` are this host's addresses.
pub(super) fn trace(r: &Ruleset, pkt: Packet, from: From, local: &[Ipv4Addr]) -> BTreeSet<End> {
    let start = State {
        pkt,
        masq: false,
        dnat: None,
    };
    let hooks: Vec<&str> = match from {
        From::Outside => vec![
            "filter-prerouting",
            "nat-prerouting",
            "filter-prerouting-post-dnat",
            "after-routing",
        ],
        From::ThisHost => vec!["filter-output", "nat-output", "filter-output-post-dnat"],
    };
    let mut ends = BTreeSet::new();
    let mut states = vec![start];
    for hook in hooks {
        let mut next = Vec::new();
        for st in states {
            let chain = if hook == "after-routing" {
                if local.contains(&st.pkt.daddr) {
                    "filter-input"
                } else {
                    "filter-forward"
                }
            } else {
                hook
            };
            for (flow, st) in run(r, chain, st) {
                match flow {
                    Flow::Drop => {
                        ends.insert(End::Drop);
                    }
                    Flow::Reject => {
                        ends.insert(End::Reject);
                    }
                    Flow::Continue | Flow::Accept => next.push(st),
                }
            }
        }
        states = next;
    }
    for st in states {
        ends.insert(End::Pass {
            to: st
                .dnat
                .unwrap_or(SocketAddrV4::new(st.pkt.daddr, st.pkt.dport)),
            masquerade: st.masq,
        });
    }
    ends
}

fn run(r: &Ruleset, chain: &str, st: State) -> Vec<(Flow, State)> {
    let Some(rules) = r.chains.get(chain) else {
        return vec![(Flow::Continue, st)];
    };
    let mut out = Vec::new();
    let mut live = vec![st];
    for rule in rules {
        let mut still = Vec::new();
        for st in live {
            for (result, st) in rule_once(r, strip_comment(rule), st) {
                match result {
                    Step::Next => still.push(st),
                    Step::Return => out.push((Flow::Continue, st)),
                    Step::End(flow) => out.push((flow, st)),
                }
            }
        }
        live = still;
    }
    out.extend(live.into_iter().map(|st| (Flow::Continue, st)));
    out
}

enum Step {
    Next,
    Return,
    End(Flow),
}

fn addr_matches(r: &Ruleset, st: &State, value: &str, ip: Ipv4Addr) -> bool {
    if let Some(set) = value.strip_prefix('@') {
        if set.starts_with("affinity-") {
            return st.pkt.affinity.contains(set);
        }
        return r
            .sets
            .get(set)
            .is_some_and(|e| e.iter().any(|(k, _)| k == &ip.to_string()));
    }
    let value = value.trim_matches(|c| c == '{' || c == '}').trim();
    value.split(", ").any(|v| match Cidr::parse(v) {
        Ok(c) if v.contains('/') => contains(&c, ip),
        _ => v.parse::<Ipv4Addr>() == Ok(ip),
    })
}

/// Evaluates one rule; numgen and verdict maps may fork the state.
fn rule_once(r: &Ruleset, rule: &str, mut st: State) -> Vec<(Step, State)> {
    let w: Vec<&str> = rule.split_whitespace().collect();
    let mut i = 0;
    while i < w.len() {
        match w[i] {
            "ct" => i += 3, // ct state new: every traced packet is new
            "ip" if w[i + 1] == "daddr" && w.get(i + 2) == Some(&".") => {
                // ip daddr . meta l4proto . th dport vmap @MAP
                let key = format!("{} . {} . {}", st.pkt.daddr, st.pkt.proto, st.pkt.dport);
                return vmap(r, w[i + 9], &key, st);
            }
            "ip" => {
                let field = w[i + 1];
                let (negate, value, used) = if w[i + 2] == "!=" {
                    (true, w[i + 3], 4)
                } else if w[i + 2] == "{" {
                    let end = w[i..].iter().position(|t| *t == "}").unwrap() + i;
                    let text = w[i + 2..=end].join(" ");
                    return if addr_matches(r, &st, &text, field_of(&st, field)) {
                        rest_of(r, &w[end + 1..], st)
                    } else {
                        vec![(Step::Next, st)]
                    };
                } else {
                    (false, w[i + 2], 3)
                };
                if addr_matches(r, &st, value, field_of(&st, field)) == negate {
                    return vec![(Step::Next, st)];
                }
                i += used;
            }
            "tcp" | "udp" | "sctp" if w.get(i + 1) == Some(&"dport") => {
                if st.pkt.proto != w[i] || st.pkt.dport.to_string() != w[i + 2] {
                    return vec![(Step::Next, st)];
                }
                i += 3;
            }
            "meta" if w[i + 1] == "l4proto" && w.get(i + 2) == Some(&".") => {
                // meta l4proto . th dport vmap @MAP
                let key = format!("{} . {}", st.pkt.proto, st.pkt.dport);
                return vmap(r, w[i + 6], &key, st);
            }
            "meta" => i += 3, // meta l4proto tcp (before dnat)
            "fib" => {
                if !st.pkt.local_source {
                    return vec![(Step::Next, st)];
                }
                i += 4;
            }
            "update" => {
                st.pkt
                    .affinity
                    .insert(w[i + 1].trim_start_matches('@').into());
                return vec![(Step::Next, st)];
            }
            "numgen" => {
                // numgen random mod K == 0 VERDICT: both outcomes are possible.
                let verdict = w[i + 6..].join(" ");
                let mut ends = verdict_of(r, &verdict, st.clone());
                ends.push((Step::Next, st));
                return ends;
            }
            "dnat" => {
                let to: SocketAddrV4 = w[i + 2].parse().unwrap();
                // Later hooks (filter-forward, post-dnat) see the new destination.
                st.pkt.daddr = *to.ip();
                st.pkt.dport = to.port();
                st.dnat = Some(to);
                return vec![(Step::End(Flow::Accept), st)];
            }
            "mark" | "masquerade" => return vec![(Step::Next, st)],
            _ => return verdict_of(r, &w[i..].join(" "), st),
        }
    }
    vec![(Step::Next, st)]
}

fn rest_of(r: &Ruleset, rest: &[&str], st: State) -> Vec<(Step, State)> {
    rule_once(r, &rest.join(" "), st)
}

fn field_of(st: &State, field: &str) -> Ipv4Addr {
    match field {
        "saddr" => st.pkt.saddr,
        _ => st.pkt.daddr,
    }
}

fn vmap(r: &Ruleset, map: &str, key: &str, st: State) -> Vec<(Step, State)> {
    let map = map.trim_start_matches('@');
    let found = r
        .sets
        .get(map)
        .and_then(|e| e.iter().find(|(k, _)| k == key))
        .map(|(_, v)| v.clone());
    match found {
        Some(verdict) => verdict_of(r, &verdict, st),
        None => vec![(Step::Next, st)],
    }
}

fn verdict_of(r: &Ruleset, verdict: &str, mut st: State) -> Vec<(Step, State)> {
    let w: Vec<&str> = verdict.split_whitespace().collect();
    match w.as_slice() {
        ["jump", "mark-for-masquerade"] => {
            st.masq = true;
            vec![(Step::Next, st)]
        }
        ["jump", chain] => run(r, chain, st)
            .into_iter()
            .map(|(flow, st)| match flow {
                Flow::Continue => (Step::Next, st),
                other => (Step::End(other), st),
            })
            .collect(),
        ["goto", chain] => run(r, chain, st)
            .into_iter()
            .map(|(flow, st)| match flow {
                Flow::Continue => (Step::Return, st),
                other => (Step::End(other), st),
            })
            .collect(),
        ["return"] => vec![(Step::Return, st)],
        ["reject"] => vec![(Step::End(Flow::Reject), st)],
        ["drop"] => vec![(Step::End(Flow::Drop), st)],
        ["accept"] => vec![(Step::End(Flow::Accept), st)],
        other => panic!("the tracer does not know {other:?}"),
    }
}
