//! Certificate signing (upstream's csrsigning controller) and the approval of nodes'
//! serving certificates.
//!
//! The signer issues approved CertificateSigningRequests of the built-in signers
//! `kubernetes.io/kubelet-serving`, `kubernetes.io/kube-apiserver-client` and
//! `kubernetes.io/kube-apiserver-client-kubelet` with the cluster CA, checking each
//! signer's rules (the subject and usages it allows) as upstream does; a request that
//! breaks them gets the `Failed` condition instead of a certificate. Requests of other
//! signers are left to whoever runs them.
//!
//! Upstream leaves a node's serving certificate request for an administrator (or an add-on)
//! to approve. kybern approves it itself, as k3s issues its agents' serving certificates:
//! only a request from the node itself (or a `system:masters` member) whose subject is
//! `system:node:<name>`/`system:nodes` and whose names are that Node's own addresses and
//! host name. Anything else waits for `kubectl certificate approve`.
//!
//! The CA key is a setting ([`SigningCa`]): `kybern server` passes its own; without it the
//! loop signs nothing and says so once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use apiserver::pki::{ExtendedKeyUsagePurpose as Eku, Grant, KeyUsagePurpose as Ku, Pki};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::{Context, LoopFuture};

pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// Upstream's --cluster-signing-duration.
const MAX_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest `spec.expirationSeconds` upstream accepts.
const MIN_VALIDITY: Duration = Duration::from_secs(600);

/// The CA the loop signs with (`kybern server`'s own).
#[derive(Clone)]
pub struct SigningCa(pub Pki);

/// The loop entry for [`crate::loops`].
pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let Some(ca) = ctx.settings.get::<SigningCa>().cloned() else {
            info!(
                "no cluster signing CA in this process: certificate requests are not signed here"
            );
            return futures::future::pending().await;
        };
        let client = ctx.client.clone();
        let state = Arc::new((client.clone(), ca));
        crate::runtime::own_watch::run(
            Api::<CertificateSigningRequest>::all(client),
            watcher::Config::default(),
            "certificate request",
            reconcile,
            state,
        )
        .await;
        Ok(())
    })
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    state: Arc<(kube::Client, SigningCa)>,
) -> Result<Action, Error> {
    let (client, SigningCa(pki)) = &*state;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let name = csr.name_any();
    let status = csr.status.clone().unwrap_or_default();
    if status.certificate.as_ref().is_some_and(|c| !c.0.is_empty()) {
        return Ok(Action::await_change());
    }
    let has = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if has("Denied") || has("Failed") {
        return Ok(Action::await_change());
    }
    let signer = csr.spec.signer_name.as_str();
    if ![KUBELET_SERVING, APISERVER_CLIENT, APISERVER_CLIENT_KUBELET].contains(&signer) {
        return Ok(Action::await_change());
    }
    let request = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let names = apiserver::pki::request_names(&request);
    if !has("Approved") {
        if signer != KUBELET_SERVING {
            return Ok(Action::await_change());
        }
        let node_name = names
            .as_ref()
            .ok()
            .and_then(|n| n.common_name.strip_prefix("system:node:"))
            .map(str::to_string);
        let node = match node_name {
            Some(n) => Api::<Node>::all(client.clone()).get_opt(n.as_str()).await?,
            None => None,
        };
        match names
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|n| node_may_have(&csr, n, node.as_ref()))
        {
            Ok(()) => {
                let condition = condition(
                    "Approved",
                    "AutoApproved",
                    "kybern approved this node's serving certificate for its own name and addresses",
                );
                let patch = json!({"status": {"conditions": [condition]}});
                api.patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                info!(csr = %name, "approved a node's serving certificate request");
            }
            Err(reason) => {
                info!(csr = %name, %reason, "not approving the serving certificate request: `kubectl certificate approve` it if it is wanted");
            }
        }
        return Ok(Action::await_change());
    }
    let grant = names
        .map_err(|e| e.to_string())
        .and_then(|n| grant(signer, &csr.spec.usages.clone().unwrap_or_default(), &n))
        .map(|mut g| {
            g.validity = validity(csr.spec.expiration_seconds);
            g
        });
    let status_patch =
        match grant.and_then(|g| pki.sign_request(&request, &g).map_err(|e| e.to_string())) {
            Ok(cert) => json!({"status": {"certificate": base64_encode(cert.as_bytes())}}),
            Err(reason) => {
                let mut conditions = status.conditions.clone().unwrap_or_default();
                conditions.push(condition("Failed", "SignerValidationFailure", &reason));
                json!({"status": {"conditions": conditions}})
            }
        };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status_patch))
        .await?;
    info!(csr = %name, signer, "certificate request processed");
    Ok(Action::await_change())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn condition(type_: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(Timestamp::now());
    CertificateSigningRequestCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// How long a certificate is valid: the request's `expirationSeconds` within
/// [10 minutes, the signer's maximum], else the maximum.
pub fn validity(expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        Some(s) => {
            Duration::from_secs(u64::try_from(s).unwrap_or(0)).clamp(MIN_VALIDITY, MAX_VALIDITY)
        }
        None => MAX_VALIDITY,
    }
}

/// The usages a signer grants for `usages`, or why the request breaks its rules
/// (upstream's per-signer validation in the csrsigning controller).
pub fn grant(
    signer: &str,
    usages: &[String],
    names: &apiserver::pki::RequestNames,
) -> Result<Grant, String> {
    if names.is_ca {
        return Err("a CA certificate may not be requested".into());
    }
    let (required, allowed): (&str, &[&str]) = match signer {
        KUBELET_SERVING => (
            "server auth",
            &["digital signature", "key encipherment", "server auth"],
        ),
        APISERVER_CLIENT | APISERVER_CLIENT_KUBELET => (
            "client auth",
            &["digital signature", "key encipherment", "client auth"],
        ),
        other => return Err(format!("signer {other} is not served here")),
    };
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("usage {u:?} is not allowed for signer {signer}"));
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("signer {signer} requires the usage {required:?}"));
    }
    if signer != APISERVER_CLIENT {
        let is_node = names.common_name.starts_with("system:node:")
            && names.common_name.len() > "system:node:".len();
        if !is_node || names.organizations != ["system:nodes"] {
            return Err(format!(
                "signer {signer} signs only subjects CN=system:node:<name>, O=system:nodes"
            ));
        }
    }
    if signer == APISERVER_CLIENT_KUBELET
        && (!names.dns_names.is_empty() || !names.ip_addresses.is_empty())
    {
        return Err(format!(
            "signer {signer} signs no subject alternative names"
        ));
    }
    if !names.other_names.is_empty() {
        return Err("e-mail and URI subject alternative names are not allowed".into());
    }
    let mut grant = Grant {
        key_usages: Vec::new(),
        extended_key_usages: Vec::new(),
        validity: MAX_VALIDITY,
    };
    for u in usages {
        match u.as_str() {
            "digital signature" => grant.key_usages.push(Ku::DigitalSignature),
            "key encipherment" => grant.key_usages.push(Ku::KeyEncipherment),
            "server auth" => grant.extended_key_usages.push(Eku::ServerAuth),
            "client auth" => grant.extended_key_usages.push(Eku::ClientAuth),
            _ => {}
        }
    }
    Ok(grant)
}

/// Whether kybern approves a serving certificate request on its own: the node asks for
/// itself (or an administrator does), for names the Node has.
pub fn node_may_have(
    csr: &CertificateSigningRequest,
    names: &apiserver::pki::RequestNames,
    node: Option<&Node>,
) -> Result<(), String> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    grant(KUBELET_SERVING, &usages, names)?;
    let node_name = names.common_name.trim_start_matches("system:node:");
    let Some(node) = node else {
        return Err(format!("node {node_name} does not exist"));
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let admin = csr
        .spec
        .groups
        .iter()
        .flatten()
        .any(|g| g == "system:masters");
    if requester != names.common_name && !admin {
        return Err(format!(
            "requested by {requester:?}, neither the node itself nor a system:masters member"
        ));
    }
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default();
    let ips: BTreeSet<IpAddr> = addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let mut hosts: BTreeSet<String> = addresses
        .iter()
        .filter(|a| a.type_ == "Hostname" || a.type_.ends_with("DNS"))
        .map(|a| a.address.clone())
        .collect();
    hosts.insert(node.name_any());
    if let Some(ip) = names.ip_addresses.iter().find(|ip| !ips.contains(ip)) {
        return Err(format!("{ip} is not one of node {node_name}'s addresses"));
    }
    if let Some(d) = names.dns_names.iter().find(|d| !hosts.contains(*d)) {
        return Err(format!("{d} is not one of node {node_name}'s names"));
    }
    if names.ip_addresses.is_empty() && names.dns_names.is_empty() {
        return Err("a serving certificate needs at least one DNS name or IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiserver::pki::RequestNames;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

    fn node_names(ips: &[&str], dns: &[&str]) -> RequestNames {
        RequestNames {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: ips.iter().map(|i| i.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn usages(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_signer_grants_only_its_usages_and_subjects() {
        let serving = usages(&["digital signature", "server auth"]);
        let client = usages(&["digital signature", "client auth"]);
        let mut alice = node_names(&[], &[]);
        alice.common_name = "alice".into();
        alice.organizations = vec!["dev".into()];
        let cases = [
            (
                "node serving",
                KUBELET_SERVING,
                &serving,
                node_names(&["10.0.0.1"], &["n1"]),
                true,
            ),
            (
                "serving without server auth",
                KUBELET_SERVING,
                &client,
                node_names(&["10.0.0.1"], &[]),
                false,
            ),
            (
                "serving for a user",
                KUBELET_SERVING,
                &serving,
                alice.clone(),
                false,
            ),
            (
                "client for any user",
                APISERVER_CLIENT,
                &client,
                alice.clone(),
                true,
            ),
            (
                "kubelet client for a user",
                APISERVER_CLIENT_KUBELET,
                &client,
                alice,
                false,
            ),
            (
                "kubelet client with names",
                APISERVER_CLIENT_KUBELET,
                &client,
                node_names(&["10.0.0.1"], &[]),
                false,
            ),
            (
                "kubelet client",
                APISERVER_CLIENT_KUBELET,
                &client,
                node_names(&[], &[]),
                true,
            ),
            (
                "another signer",
                "example.com/x",
                &client,
                node_names(&[], &[]),
                false,
            ),
        ];
        for (name, signer, usages, names, ok) in cases {
            assert_eq!(grant(signer, usages, &names).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn a_ca_certificate_is_never_granted() {
        let mut names = node_names(&["10.0.0.1"], &[]);
        names.is_ca = true;
        let err = grant(KUBELET_SERVING, &usages(&["server auth"]), &names).unwrap_err();
        assert!(err.contains("CA"), "{err}");
    }

    #[test]
    fn a_node_is_approved_only_for_its_own_names_and_by_itself_or_an_admin() {
        let node = Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: "10.0.0.1".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let csr = |user: &str, groups: &[&str]| CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                signer_name: KUBELET_SERVING.into(),
                usages: Some(usages(&["digital signature", "server auth"])),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        let own = node_names(&["10.0.0.1"], &["n1"]);
        let cases = [
            (
                "the node itself",
                csr("system:node:n1", &["system:nodes"]),
                own.clone(),
                Some(&node),
                true,
            ),
            (
                "an administrator",
                csr("kybern-admin", &["system:masters"]),
                own.clone(),
                Some(&node),
                true,
            ),
            (
                "another node",
                csr("system:node:n2", &["system:nodes"]),
                own.clone(),
                Some(&node),
                false,
            ),
            (
                "another address",
                csr("system:node:n1", &[]),
                node_names(&["10.0.0.9"], &[]),
                Some(&node),
                false,
            ),
            (
                "another name",
                csr("system:node:n1", &[]),
                node_names(&["10.0.0.1"], &["evil.example"]),
                Some(&node),
                false,
            ),
            ("no such node", csr("system:node:n1", &[]), own, None, false),
        ];
        for (name, csr, names, node, ok) in cases {
            assert_eq!(node_may_have(&csr, &names, node).is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn validity_is_the_requested_one_within_the_signers_bounds() {
        assert_eq!(validity(None), MAX_VALIDITY);
        assert_eq!(validity(Some(3600)), Duration::from_secs(3600));
        assert_eq!(validity(Some(60)), MIN_VALIDITY);
        assert_eq!(validity(Some(i32::MAX)), MAX_VALIDITY);
    }
}
