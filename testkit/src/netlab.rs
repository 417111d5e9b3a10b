//! Network fixtures of the privileged end-to-end tests (root): a number `T` per test, held
//! through a lock directory, from which every address, range and name of the test derives,
//! and the two-node network of the service tests ([`NetLab`]).
//!
//! Per `T` (100-249):
//!
//! | what | value |
//! |---|---|
//! | cluster CIDR; node 1 / node 2 podCIDR | `10.42.T.0/24`; `10.42.T.0/25` / `10.42.T.128/25` |
//! | service CIDR; `kubernetes` IP; cluster DNS | `10.43.T.0/24`; `10.43.T.1`; `10.43.T.10` |
//! | host - node 2 (netns `kbn-T`) | `198.18.T.0/30`: host `kbl<T>n` .1, node 2 .2 |
//! | host - outside client (netns `kbo-T`) | `198.18.T.4/30`: host `kbl<T>o` .5, client .6 |
//! | host - fake upstream DNS (netns `kbd-T`) | `198.18.T.8/30`: host `kbl<T>d` .9, upstream .10 |
//! | guard route in the host | `unreachable 198.18.T.0/24 proto 77` (the /30s win by length) |
//! | bridges / nft tables | node 1 `kbt<T>` / `kybern-kbt<T>`; node 2 `kbt<T>b` inside `kbn-T` |
//!
//! 198.18.0.0/15 is RFC 2544's benchmarking block, routed nowhere. The namespaces have no
//! default route: node 2, the outside client and the upstream reach `198.18.T.0/24` (and the
//! outside client the cluster CIDR `10.42.T.0/24`) through the host and nothing else, and the host's guard route refuses every `198.18.T` address
//! that is not one of the test's links. Nothing here
//! changes a sysctl or a route of the host's own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Where the locks of claimed numbers live (one directory per number, with the owner's pid).
const LOCKS: &str = "/run/kybern-tests";

/// The route protocol of the guard route, so a crashed run's guard is found and removed.
const GUARD_PROTO: &str = "77";

/// A test's number `T`: no other test process holds it while this lives, and no route of
/// the host uses its cluster range. Released on drop.
pub struct Claim {
    t: u8,
    lock: PathBuf,
}

impl Claim {
    /// Claims a free number in 100-249; a lock whose owner process is gone is reclaimed.
    pub fn take() -> Claim {
        let routes = ip_output(&["-4", "route", "show", "table", "all"]);
        std::fs::create_dir_all(LOCKS).unwrap();
        let start = (std::process::id() % 150) as u8;
        for i in 0..150u8 {
            let t = 100 + (start + i) % 150;
            if routes.contains(&format!("10.42.{t}.")) {
                continue;
            }
            let lock = Path::new(LOCKS).join(format!("subnet-{t}"));
            if std::fs::create_dir(&lock).is_ok() {
                std::fs::write(lock.join("pid"), std::process::id().to_string()).unwrap();
                return Claim { t, lock };
            }
            let owner = std::fs::read_to_string(lock.join("pid")).unwrap_or_default();
            if !owner.is_empty() && !Path::new(&format!("/proc/{}", owner.trim())).exists() {
                let _ = std::fs::remove_dir_all(&lock);
            }
        }
        panic!("no free test number in 100-249 (locks in {LOCKS})");
    }

    pub fn t(&self) -> u8 {
        self.t
    }

    /// `10.42.T.0/24`: the cluster CIDR of this test's cluster.
    pub fn cluster_cidr(&self) -> String {
        format!("10.42.{}.0/24", self.t)
    }

    /// `10.43.T.0/24`: the service CIDR of this test's cluster.
    pub fn service_cidr(&self) -> String {
        format!("10.43.{}.0/24", self.t)
    }

    /// `10.43.T.10`: the cluster DNS address.
    pub fn cluster_dns(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 43, self.t, 10)
    }

    /// `10.43.T.1`: the `kubernetes` Service's ClusterIP (the service CIDR's first).
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 43, self.t, 1)
    }

    /// `--cluster-cidr`, `--service-cidr` and `--cluster-dns` with this number's ranges,
    /// for a `kybern server`, `agent` or `up` of the test: its routes, rules and DNS
    /// address never collide with another test's.
    pub fn range_flags(&self) -> Vec<String> {
        vec![
            "--cluster-cidr".into(),
            self.cluster_cidr(),
            "--service-cidr".into(),
            self.service_cidr(),
            "--cluster-dns".into(),
            self.cluster_dns().to_string(),
        ]
    }

    /// The bridge of the test's (first) node, `kbt<T>`.
    pub fn bridge(&self) -> String {
        format!("kbt{}", self.t)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.lock);
    }
}

/// The two-node network of §5.2: links and namespaces for a second node, an outside
/// client and a fake upstream DNS server, all derived from one claimed number. Dropping it
/// (also on panic) removes all of it, and what agents of the same number left in the host.
pub struct NetLab {
    claim: Arc<Claim>,
}

impl NetLab {
    /// Claims a number, removes what a crashed run with it left, and builds the network.
    pub fn create() -> NetLab {
        let lab = NetLab {
            claim: Arc::new(Claim::take()),
        };
        remove(lab.t());
        let t = lab.t();
        let links = [
            (lab.node2_ns(), format!("kbl{t}n"), 0u8, None),
            // The outside client also reaches pods by their addresses, through node 1.
            (
                lab.outside_ns(),
                format!("kbl{t}o"),
                4,
                Some(lab.claim().cluster_cidr()),
            ),
            (lab.upstream_ns(), format!("kbl{t}d"), 8, None),
        ];
        for (ns, host_link, base, pods) in links {
            let peer = format!("{host_link}p");
            let host_ip = format!("198.18.{t}.{}/30", base + 1);
            let ns_ip = format!("198.18.{t}.{}/30", base + 2);
            let gateway = format!("198.18.{t}.{}", base + 1);
            let lab_range = format!("198.18.{t}.0/24");
            let mut steps: Vec<Vec<&str>> = vec![
                vec!["netns", "add", &ns],
                vec![
                    "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
                ],
                vec!["link", "set", &peer, "netns", &ns],
                vec!["addr", "add", &host_ip, "dev", &host_link],
                vec!["link", "set", &host_link, "up"],
                vec!["-n", &ns, "link", "set", "lo", "up"],
                vec!["-n", &ns, "addr", "add", &ns_ip, "dev", &peer],
                vec!["-n", &ns, "link", "set", &peer, "up"],
                vec!["-n", &ns, "route", "add", &lab_range, "via", &gateway],
            ];
            if let Some(pods) = &pods {
                steps.push(vec!["-n", &ns, "route", "add", pods, "via", &gateway]);
            }
            for args in steps {
                ip(&args);
            }
        }
        let guard = format!("198.18.{t}.0/24");
        ip(&["route", "add", "unreachable", &guard, "proto", GUARD_PROTO]);
        lab
    }

    pub fn t(&self) -> u8 {
        self.claim.t
    }

    /// The number's ranges and names (cluster and service CIDR, DNS, node 1's bridge).
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// The claim, to hold the number past the network's removal (so that checking what
    /// is left of it races no other test taking the number).
    pub fn held_claim(&self) -> Arc<Claim> {
        self.claim.clone()
    }

    /// `10.42.T.0/25`, node 1's podCIDR.
    pub fn node1_pod_cidr(&self) -> String {
        format!("10.42.{}.0/25", self.t())
    }

    /// `10.42.T.128/25`, node 2's podCIDR.
    pub fn node2_pod_cidr(&self) -> String {
        format!("10.42.{}.128/25", self.t())
    }

    /// 198.18.T.1: node 1's InternalIP and the API server's advertised address.
    pub fn node1_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.t(), 1)
    }

    /// 198.18.T.2: node 2's InternalIP, inside `kbn-T`.
    pub fn node2_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.t(), 2)
    }

    /// 198.18.T.6: the outside client, inside `kbo-T`.
    pub fn outside_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.t(), 6)
    }

    /// 198.18.T.10: the fake upstream DNS server's address, inside `kbd-T`.
    pub fn upstream_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.t(), 10)
    }

    /// Node 2's bridge, `kbt<T>b` (inside `kbn-T`).
    pub fn node2_bridge(&self) -> String {
        format!("kbt{}b", self.t())
    }

    pub fn node2_ns(&self) -> String {
        format!("kbn-{}", self.t())
    }

    pub fn outside_ns(&self) -> String {
        format!("kbo-{}", self.t())
    }

    pub fn upstream_ns(&self) -> String {
        format!("kbd-{}", self.t())
    }

    /// `program` in node 2's network namespace only (`nsenter --net`): unlike `ip netns
    /// exec`, it keeps the host's mount namespace, so the containerd, shims and mounts a
    /// node-2 agent makes are the ones `kybern agent --reset` and the test see.
    pub fn in_node2(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.node2_ns(), program)
    }

    /// `program` in the outside client's namespace.
    pub fn in_outside(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.outside_ns(), program)
    }

    /// `program` in the fake upstream DNS server's namespace.
    pub fn in_upstream(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.upstream_ns(), program)
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        remove(self.t());
    }
}

/// `program` run by `nsenter` in the network namespace `/run/netns/<ns>`.
pub fn in_netns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    cmd
}

/// Removes, best effort and idempotently, everything of number `t`: its namespaces (and
/// with them node 2's veths, routes and nft table), its host links, the guard route, the
/// routes and rules agents of this number installed for its ranges (protocols 75, 76, 77),
/// and the nft tables of its bridges.
pub fn remove(t: u8) {
    for ns in [format!("kbn-{t}"), format!("kbo-{t}"), format!("kbd-{t}")] {
        if netns_names().contains(&ns) {
            quiet_ip(&["netns", "del", &ns]);
        }
    }
    for link in link_names().into_iter().filter(|l| owned_link(l, t)) {
        quiet_ip(&["link", "del", &link]);
    }
    for route in owned_routes(t) {
        let args: Vec<&str> = std::iter::once("route")
            .chain(std::iter::once("del"))
            .chain(route.split_whitespace())
            .collect();
        quiet_ip(&args);
    }
    for rule in owned_rules(t) {
        // "32000:\tfrom all to 10.43.T.0/24 iif lo lookup 76" -> del pref 32000 from ...
        let Some((pref, rest)) = rule.split_once(':') else {
            continue;
        };
        let mut args = vec!["rule", "del", "pref", pref.trim()];
        args.extend(rest.split_whitespace().filter(|w| *w != "[detached]"));
        quiet_ip(&args);
    }
    for table in owned_nft_tables(t) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .status();
    }
}

/// What of number `t` is still on the host: namespaces, links, routes, rules, nft tables.
/// Empty once a test's cluster and network are gone.
pub fn leftovers(t: u8) -> Vec<String> {
    let mut left: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| [format!("kbn-{t}"), format!("kbo-{t}"), format!("kbd-{t}")].contains(n))
        .map(|n| format!("netns {n}"))
        .collect();
    left.extend(
        link_names()
            .into_iter()
            .filter(|l| owned_link(l, t))
            .map(|l| format!("link {l}")),
    );
    left.extend(owned_routes(t).into_iter().map(|r| format!("route {r}")));
    left.extend(owned_rules(t).into_iter().map(|r| format!("rule {r}")));
    left.extend(
        owned_nft_tables(t)
            .into_iter()
            .map(|n| format!("nft table ip {n}")),
    );
    left
}

/// Panics listing what of number `t` is left (see [`leftovers`]).
pub fn assert_nothing_left(t: u8) {
    let left = leftovers(t);
    assert!(
        left.is_empty(),
        "left behind for test number {t}: {left:#?}"
    );
}

/// Links of number `t`: the lab's `kbl<T>*`, the bridges `kbt<T>`/`kbt<T>b` and the test
/// clients' `kbtc<T>*`. (`kbt12` is not `kbt123`: the number must end the name or be
/// followed by a letter.)
fn owned_link(link: &str, t: u8) -> bool {
    ["kbl", "kbt", "kbtc"].iter().any(|prefix| {
        link.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(&t.to_string()))
            .is_some_and(|tail| !tail.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Host routes of the test's ranges: `10.42.T.`, `10.43.T.`, `198.18.T.` in any table
/// (the connected routes of the lab's links go with the links).
fn owned_routes(t: u8) -> Vec<String> {
    ip_output(&["-4", "route", "show", "table", "all"])
        .lines()
        .filter(|r| mentions_range(r, t))
        .filter(|r| !r.contains("proto kernel"))
        .map(str::to_string)
        .collect()
}

fn owned_rules(t: u8) -> Vec<String> {
    ip_output(&["-4", "rule", "show"])
        .lines()
        .filter(|r| mentions_range(r, t))
        .map(str::to_string)
        .collect()
}

fn mentions_range(line: &str, t: u8) -> bool {
    line.split(|c: char| c.is_whitespace() || c == '/')
        .any(|word| {
            [
                format!("10.42.{t}."),
                format!("10.43.{t}."),
                format!("198.18.{t}."),
            ]
            .iter()
            .any(|p| word.starts_with(p.as_str()))
        })
}

/// nft tables (family ip) of number `t`'s bridges in the host: `kybern-kbt<T>`, `…b`.
fn owned_nft_tables(t: u8) -> Vec<String> {
    let out = Command::new("nft").args(["list", "tables", "ip"]).output();
    let Ok(out) = out else { return Vec::new() };
    let mine = [format!("kybern-kbt{t}"), format!("kybern-kbt{t}b")];
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table ip "))
        .map(|n| n.trim().to_string())
        .filter(|n| mine.contains(n))
        .collect()
}

fn netns_names() -> Vec<String> {
    ip_output(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn link_names() -> Vec<String> {
    ip_output(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// Runs `ip ARGS`, panicking (with the command) when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS`, ignoring failure (clean-up of what may not exist).
fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_of_a_number_are_told_from_longer_numbers() {
        let cases = [
            ("lab link", "kbl12n", true),
            ("lab link peer", "kbl12np", true),
            ("node 1 bridge", "kbt12", true),
            ("node 2 bridge", "kbt12b", true),
            ("test client", "kbtc12h", true),
            ("longer number", "kbt123", false),
            ("longer lab number", "kbl120n", false),
            ("host interface", "eth0", false),
        ];
        for (name, link, want) in cases {
            assert_eq!(owned_link(link, 12), want, "{name}: {link}");
        }
    }

    #[test]
    fn routes_of_a_number_are_told_from_other_numbers() {
        let cases = [
            ("guard", "unreachable 198.18.12.0/24 proto 77", true),
            (
                "safety route",
                "unreachable 10.43.12.0/24 proto 76 metric 4096",
                true,
            ),
            (
                "peer route",
                "10.42.12.128/25 via 198.18.12.2 dev kbl12n proto 75",
                true,
            ),
            ("other number", "unreachable 10.42.120.0/24 proto 76", false),
            ("host default", "default via 192.168.1.1 dev eth0", false),
            (
                "rule",
                "32000:\tfrom all to 10.43.12.0/24 iif lo lookup 76",
                true,
            ),
        ];
        for (name, line, want) in cases {
            assert_eq!(mentions_range(line, 12), want, "{name}: {line}");
        }
    }
}
