//! Service address allocation: ClusterIPs from the service CIDR (`--service-cidr`),
//! recorded as networking.k8s.io/v1 IPAddress objects (as upstream's allocator does since
//! 1.33), and NodePorts from 30000-32767, recorded under internal keys. Creating a record
//! is the atomic claim; a conflict means the address is taken.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::Api;
use crate::object;
use crate::status::{ApiError, Cause, Result};
use crate::storage;

pub(super) const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The cluster's service addresses: the range ClusterIPs come from, the cluster DNS
/// address in it and the DNS domain (`--service-cidr`, `--cluster-dns`,
/// `--cluster-domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNet {
    network: Ipv4Addr,
    prefix: u8,
    dns: Ipv4Addr,
    domain: String,
}

impl Default for ServiceNet {
    /// 10.43.0.0/16, DNS at 10.43.0.10, cluster.local.
    fn default() -> Self {
        ServiceNet::new(
            (Ipv4Addr::new(10, 43, 0, 0), 16),
            Ipv4Addr::new(10, 43, 0, 10),
            "cluster.local",
        )
        .expect("the defaults are consistent")
    }
}

impl ServiceNet {
    /// Checks the range as kube-apiserver checks `--service-cluster-ip-range` (at most
    /// 2^20 addresses, at least one besides the `kubernetes` Service's) and that the
    /// cluster DNS address is one a Service can hold.
    pub fn new(
        cidr: (Ipv4Addr, u8),
        dns: Ipv4Addr,
        domain: &str,
    ) -> std::result::Result<Self, String> {
        let (addr, prefix) = cidr;
        if !(12..=30).contains(&prefix) {
            return Err(format!(
                "--service-cidr {addr}/{prefix}: the prefix length must be between 12 and 30 (at most 2^20 and at least 4 addresses)"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        let net = ServiceNet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
            dns,
            domain: domain.trim_end_matches('.').to_string(),
        };
        if !net.contains(dns) {
            return Err(format!(
                "--cluster-dns {dns} is not an address of --service-cidr {}: the kube-dns Service could not hold it",
                net.cidr()
            ));
        }
        if dns == net.kubernetes_ip() {
            return Err(format!(
                "--cluster-dns {dns} is the kubernetes Service's address (the first of --service-cidr {})",
                net.cidr()
            ));
        }
        Ok(net)
    }

    /// `10.43.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    /// The first address of the range: the `kubernetes` Service's.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        self.first()
    }

    /// The cluster DNS address: the `kube-dns` Service's.
    pub fn dns_ip(&self) -> Ipv4Addr {
        self.dns
    }

    /// The cluster's DNS domain, without a trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The last address a Service may hold (the one below the broadcast address).
    fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.network) | (u32::MAX >> self.prefix)) - 1)
    }

    /// Whether a Service may hold `ip`: in the range, neither its network nor its
    /// broadcast address.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first())..=u32::from(self.last())).contains(&u32::from(ip))
    }

    /// How many of the lowest addresses are kept for static assignment (KEP-3070):
    /// size/16, at least 16 and at most 256, none when the range has 16 addresses or
    /// fewer. A /16 keeps 256 (10.43.0.1-10.43.1.0), a /24 keeps 16 (.1-.16), a /28 none.
    fn static_band(&self) -> u32 {
        let size = 1u32 << (32 - self.prefix);
        if size <= 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        }
    }

    /// The bands dynamic allocation tries in order, as (first, last) inclusive: the
    /// upper one, then the lower one kept for static assignment.
    fn dynamic_bands(&self) -> Vec<(u32, u32)> {
        let first = u32::from(self.first());
        let last = u32::from(self.last());
        let offset = self.static_band();
        let mut bands = vec![(first + offset, last)];
        if offset > 0 {
            bands.push((first, first + offset - 1));
        }
        bands
    }
}

/// Something claimed for one service, released again if its write fails.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Claim {
    ClusterIp(String),
    NodePort(u16),
}

fn node_port_key(port: u16) -> String {
    format!("/kybern/allocations/nodeports/{port}")
}

fn ip_key(api: &Api, ip: &str) -> Result<String> {
    let snap = api.registry.snapshot();
    let r = snap
        .get("networking.k8s.io", "v1", "ipaddresses")
        .ok_or(ApiError::NoSuchResource)?;
    Ok(r.key(None, ip))
}

fn owner(svc: &Value) -> String {
    format!(
        "{}/{}",
        object::namespace(svc).unwrap_or(""),
        object::name(svc)
    )
}

async fn claim_ip(api: &Api, svc: &Value, ip: &str) -> Result<bool> {
    let record = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
        "metadata": {"name": ip, "uid": object::new_uid(), "creationTimestamp": object::now_rfc3339(),
            "labels": {"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": object::namespace(svc), "name": object::name(svc)}},
    });
    match api
        .storage
        .create(
            &ip_key(api, ip)?,
            serde_json::to_vec(&record).unwrap_or_default().into(),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(storage::Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn claim_port(api: &Api, svc: &Value, port: u16) -> Result<bool> {
    match api
        .storage
        .create(&node_port_key(port), owner(svc).into_bytes().into())
        .await
    {
        Ok(_) => Ok(true),
        Err(storage::Error::AlreadyExists(_)) => {
            // Already ours (an update keeping its port) counts as claimed.
            let kv = api.storage.get(&node_port_key(port)).await?;
            Ok(kv.is_some_and(|kv| kv.value == owner(svc).as_bytes()))
        }
        Err(e) => Err(e.into()),
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        target: crate::status::Target::new("", "services", object::name(svc)),
        kind: "Service".into(),
        causes,
    }
}

/// Gives a service its ClusterIP and NodePorts. `old` is the stored service on update.
/// Returns what was newly claimed.
pub(super) async fn allocate(
    api: &Api,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<Claim>> {
    let mut claims = Vec::new();
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if let Err(e) = allocate_ip(api, svc, old, &ty, &mut claims).await {
        release(api, &claims).await;
        return Err(e);
    }
    if let Err(e) = allocate_node_ports(api, svc, &ty, &mut claims).await {
        release(api, &claims).await;
        return Err(e);
    }
    Ok(claims)
}

async fn allocate_ip(
    api: &Api,
    svc: &mut Value,
    old: Option<&Value>,
    ty: &str,
    claims: &mut Vec<Claim>,
) -> Result<()> {
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let wanted = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(old_ip) = &old_ip {
        if wanted.as_ref().is_some_and(|w| w != old_ip) {
            return Err(invalid(
                svc,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    wanted.as_deref().unwrap_or(""),
                    "may not change once set",
                )],
            ));
        }
        svc["spec"]["clusterIP"] = json!(old_ip);
        svc["spec"]["clusterIPs"] = json!([old_ip]);
        return Ok(());
    }
    if ty == "ExternalName" {
        return Ok(());
    }
    let ip = match wanted.as_deref() {
        Some("None") => "None".to_string(),
        Some(w) => {
            let parsed: Ipv4Addr = w.parse().map_err(|_| {
                invalid(
                    svc,
                    vec![Cause::invalid(
                        "spec.clusterIPs[0]",
                        w,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )],
                )
            })?;
            let net = api.service_net();
            if !net.contains(parsed) {
                return Err(invalid(svc, vec![Cause::invalid("spec.clusterIPs", w, &format!(
                    "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}", net.cidr()
                ))]));
            }
            if !claim_ip(api, svc, w).await? {
                return Err(invalid(
                    svc,
                    vec![Cause::invalid(
                        "spec.clusterIPs",
                        w,
                        &format!("failed to allocate IP {w}: provided IP is already allocated"),
                    )],
                ));
            }
            claims.push(Claim::ClusterIp(w.to_string()));
            w.to_string()
        }
        None => {
            let ip = allocate_next(api, svc).await?.ok_or_else(|| {
                ApiError::Internal("failed to allocate a serviceIP: range is full".into())
            })?;
            claims.push(Claim::ClusterIp(ip.clone()));
            ip
        }
    };
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    Ok(())
}

/// A free address of the upper band, else of the lower one, each walked from a random
/// start as upstream does; `None` when both are full.
async fn allocate_next(api: &Api, svc: &Value) -> Result<Option<String>> {
    for (first, last) in api.service_net().dynamic_bands() {
        let size = last - first + 1;
        let start = fastrand::u32(..size);
        for i in 0..size {
            let ip = Ipv4Addr::from(first + (start + i) % size).to_string();
            if claim_ip(api, svc, &ip).await? {
                return Ok(Some(ip));
            }
        }
    }
    Ok(None)
}

async fn allocate_node_ports(
    api: &Api,
    svc: &mut Value,
    ty: &str,
    claims: &mut Vec<Claim>,
) -> Result<()> {
    let needs = ty == "NodePort"
        || (ty == "LoadBalancer"
            && svc.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false)));
    let snapshot = svc.clone();
    let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, p) in ports.iter_mut().enumerate() {
        if !needs {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
            continue;
        }
        // nodePort 0 is Go's unset: allocate one (protobuf clients always send it).
        match p
            .get("nodePort")
            .and_then(Value::as_u64)
            .filter(|n| *n != 0)
        {
            Some(n) => {
                let port = u16::try_from(n)
                    .ok()
                    .filter(|n| NODE_PORT_RANGE.contains(n));
                let Some(port) = port else {
                    return Err(invalid(&snapshot, vec![node_port_invalid(i, n,
                        &format!("provided port is not in the valid range. The range of valid ports is {}-{}", NODE_PORT_RANGE.start(), NODE_PORT_RANGE.end()))]));
                };
                let existing = api
                    .storage
                    .get(&node_port_key(port))
                    .await?
                    .is_some_and(|kv| kv.value == owner(&snapshot).as_bytes());
                if !existing {
                    if !claim_port(api, &snapshot, port).await? {
                        return Err(invalid(
                            &snapshot,
                            vec![node_port_invalid(
                                i,
                                n,
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    claims.push(Claim::NodePort(port));
                }
            }
            None => {
                let mut got = None;
                for _ in 0..512 {
                    let port = NODE_PORT_RANGE.start()
                        + fastrand::u16(..=NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start());
                    if claim_port(api, &snapshot, port).await? {
                        got = Some(port);
                        break;
                    }
                }
                let port = got.ok_or_else(|| {
                    ApiError::Internal("failed to allocate a node port: range is full".into())
                })?;
                claims.push(Claim::NodePort(port));
                p["nodePort"] = json!(port);
            }
        }
    }
    Ok(())
}

/// Releases claims (best effort; a leftover record only wastes one address).
pub(super) async fn release(api: &Api, claims: &[Claim]) {
    for c in claims {
        let key = match c {
            Claim::ClusterIp(ip) => match ip_key(api, ip) {
                Ok(k) => k,
                Err(_) => continue,
            },
            Claim::NodePort(p) => node_port_key(*p),
        };
        if let Err(e) = api.storage.delete(&key, None).await {
            if !matches!(e, storage::Error::NotFound(_)) {
                tracing::warn!(?c, error = %e, "releasing a service allocation failed");
            }
        }
    }
}

/// Everything a stored service holds.
pub(super) fn claims_of(svc: &Value) -> Vec<Claim> {
    let mut out = Vec::new();
    if let Some(ip) = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        out.push(Claim::ClusterIp(ip.to_string()));
    }
    for p in svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = p
            .get("nodePort")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
        {
            out.push(Claim::NodePort(n));
        }
    }
    out
}

/// A refused nodePort; upstream shows the int32 value unquoted (`Invalid value: 30080: ...`).
fn node_port_invalid(i: usize, port: u64, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: format!("spec.ports[{i}].nodePort"),
        message: format!("Invalid value: {port}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str, dns: &str) -> ServiceNet {
        let (addr, prefix) = cidr.split_once('/').unwrap();
        ServiceNet::new(
            (addr.parse().unwrap(), prefix.parse().unwrap()),
            dns.parse().unwrap(),
            "cluster.local",
        )
        .unwrap()
    }

    fn ip(text: &str) -> u32 {
        u32::from(text.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn a_service_may_hold_any_address_of_the_range_but_its_network_and_broadcast() {
        let cases = [
            ("first of a /16", "10.43.0.0/16", "10.43.0.1", true),
            ("last of a /16", "10.43.0.0/16", "10.43.255.254", true),
            ("network of a /16", "10.43.0.0/16", "10.43.0.0", false),
            ("broadcast of a /16", "10.43.0.0/16", "10.43.255.255", false),
            ("outside a /16", "10.43.0.0/16", "10.44.0.1", false),
            ("last of a /24", "10.96.7.0/24", "10.96.7.254", true),
            ("broadcast of a /24", "10.96.7.0/24", "10.96.7.255", false),
            ("next /24", "10.96.7.0/24", "10.96.8.1", false),
        ];
        for (name, cidr, addr, want) in cases {
            let net = net(
                cidr,
                &Ipv4Addr::from(ip(&cidr[..cidr.find('/').unwrap()]) + 10).to_string(),
            );
            assert_eq!(net.contains(addr.parse().unwrap()), want, "{name}");
        }
    }

    #[test]
    fn dynamic_allocation_prefers_the_band_above_the_static_one() {
        let cases = [
            (
                "a /16 keeps 256 addresses",
                "10.43.0.0/16",
                vec![("10.43.1.1", "10.43.255.254"), ("10.43.0.1", "10.43.1.0")],
            ),
            (
                "a /24 keeps 16 addresses",
                "10.96.7.0/24",
                vec![("10.96.7.17", "10.96.7.254"), ("10.96.7.1", "10.96.7.16")],
            ),
            (
                "a /28 keeps none",
                "10.96.7.0/28",
                vec![("10.96.7.1", "10.96.7.14")],
            ),
        ];
        for (name, cidr, want) in cases {
            let base = &cidr[..cidr.find('/').unwrap()];
            let net = net(cidr, &Ipv4Addr::from(ip(base) + 10).to_string());
            let want: Vec<_> = want.iter().map(|(a, b)| (ip(a), ip(b))).collect();
            assert_eq!(net.dynamic_bands(), want, "{name}");
        }
    }

    #[test]
    fn the_cluster_dns_address_must_be_one_a_service_can_hold() {
        let cases = [
            (
                "outside the range",
                "10.96.0.0/24",
                "10.43.0.10",
                "is not an address of --service-cidr 10.96.0.0/24",
            ),
            (
                "the range's broadcast",
                "10.96.0.0/24",
                "10.96.0.255",
                "is not an address of --service-cidr 10.96.0.0/24",
            ),
            (
                "the kubernetes Service's",
                "10.96.0.0/24",
                "10.96.0.1",
                "is the kubernetes Service's address",
            ),
        ];
        for (name, cidr, dns, want) in cases {
            let (addr, prefix) = cidr.split_once('/').unwrap();
            let err = ServiceNet::new(
                (addr.parse().unwrap(), prefix.parse().unwrap()),
                dns.parse().unwrap(),
                "cluster.local",
            )
            .unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
        }
        let err = ServiceNet::new(
            (Ipv4Addr::new(10, 0, 0, 0), 8),
            Ipv4Addr::new(10, 0, 0, 10),
            "cluster.local",
        )
        .unwrap_err();
        assert!(err.contains("between 12 and 30"), "{err}");
    }

    #[test]
    fn claims_of_lists_ip_and_node_ports() {
        let svc = json!({"spec": {"clusterIP": "10.43.1.2", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        assert_eq!(
            claims_of(&svc),
            vec![Claim::ClusterIp("10.43.1.2".into()), Claim::NodePort(30080)]
        );
        assert!(claims_of(&json!({"spec": {"clusterIP": "None"}})).is_empty());
    }
}
