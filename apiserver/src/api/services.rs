//! Service address allocation: ClusterIPs from the service CIDR, recorded as
//! networking.k8s.io/v1 IPAddress objects (as upstream's allocator does since 1.33), and
//! NodePorts from 30000-32767, recorded under internal keys. Creating a record is the
//! atomic claim; a conflict means the address is taken.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::Api;
use crate::object;
use crate::status::{ApiError, Cause, Result};
use crate::storage;

/// The default service CIDR, 10.43.0.0/16.
pub(super) const SERVICE_CIDR: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The address of the `kubernetes` Service.
pub(super) const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);
pub(super) const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (base, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(base) & mask
        && ip != base
        && u32::from(ip) != u32::from(base) | !mask
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
            if !in_cidr(parsed) {
                return Err(invalid(svc, vec![Cause::invalid("spec.clusterIPs", w, &format!(
                    "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1
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
            // Upstream leaves the lowest addresses for static assignment; pick above them.
            let base = u32::from(SERVICE_CIDR.0);
            let mut found = None;
            for _ in 0..256 {
                let ip = Ipv4Addr::from(base + 256 + fastrand::u32(..65_534 - 256));
                if claim_ip(api, svc, &ip.to_string()).await? {
                    found = Some(ip.to_string());
                    break;
                }
            }
            let ip = found.ok_or_else(|| {
                ApiError::Internal("failed to allocate a service IP: range is full".into())
            })?;
            claims.push(Claim::ClusterIp(ip.clone()));
            ip
        }
    };
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
    Ok(())
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

    #[test]
    fn service_cidr_excludes_network_and_broadcast() {
        assert!(in_cidr(Ipv4Addr::new(10, 43, 0, 1)));
        assert!(in_cidr(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!in_cidr(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!in_cidr(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!in_cidr(Ipv4Addr::new(10, 44, 0, 1)));
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
