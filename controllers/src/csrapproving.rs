//! Approval of kubelet client certificates (upstream's csrapproving controller, the
//! "sarapprove" approver): a pending CertificateSigningRequest of signer
//! `kubernetes.io/kube-apiserver-client-kubelet` shaped as a node client certificate
//! (subject `system:node:<name>`/`system:nodes`, no alternative names, client-auth usage)
//! is approved when a SubjectAccessReview says its requester may `create`
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own) or
//! `certificatesigningrequests/nodeclient` (a bootstrap token asking for a new node).
//! Anything else is left for `kubectl certificate approve`; csrsigning signs what is
//! approved.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use crate::csrsigning::APISERVER_CLIENT_KUBELET;
use crate::{Context, LoopFuture};

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let client = ctx.client.clone();
        crate::runtime::own_watch::run(
            Api::<CertificateSigningRequest>::all(client.clone()),
            watcher::Config::default(),
            "certificate approval",
            reconcile,
            Arc::new(client),
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

/// The subresource a recognized request's requester must be allowed to create, and the
/// approval's message, in the order upstream tries them.
const RECOGNIZERS: [(bool, &str, &str); 2] = [
    (
        true,
        "selfnodeclient",
        "Auto approving self kubelet client certificate after SubjectAccessReview.",
    ),
    (
        false,
        "nodeclient",
        "Auto approving kubelet client certificate after SubjectAccessReview.",
    ),
];

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    client: Arc<kube::Client>,
) -> Result<Action, Error> {
    let status = csr.status.clone().unwrap_or_default();
    let decided = status.conditions.iter().flatten().any(|c| {
        matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed") && c.status == "True"
    });
    if decided || status.certificate.is_some_and(|c| !c.0.is_empty()) {
        return Ok(Action::await_change());
    }
    let Some(common_name) = node_client(&csr) else {
        return Ok(Action::await_change());
    };
    let is_self = csr.spec.username.as_deref() == Some(common_name.as_str());
    for (needs_self, subresource, message) in RECOGNIZERS {
        if needs_self && !is_self {
            continue;
        }
        if allowed(&client, &csr, subresource).await? {
            let name = csr.name_any();
            let now = Time(Timestamp::now());
            let condition = CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
            };
            let patch = json!({"status": {"conditions": [condition]}});
            Api::<CertificateSigningRequest>::all((*client).clone())
                .patch_approval(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            info!(csr = %name, requester = ?csr.spec.username, "approved a kubelet client certificate request");
            return Ok(Action::await_change());
        }
    }
    Ok(Action::await_change())
}

/// The subject's common name when `csr` asks for a node client certificate (upstream's
/// `isNodeClientCert`).
fn node_client(csr: &CertificateSigningRequest) -> Option<String> {
    if csr.spec.signer_name != APISERVER_CLIENT_KUBELET {
        return None;
    }
    let request = String::from_utf8_lossy(&csr.spec.request.0);
    let names = apiserver::pki::request_names(&request).ok()?;
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let usages_ok = usages.iter().any(|u| u == "client auth")
        && usages.iter().all(|u| {
            matches!(
                u.as_str(),
                "client auth" | "digital signature" | "key encipherment"
            )
        });
    let shape_ok = names.common_name.len() > "system:node:".len()
        && names.common_name.starts_with("system:node:")
        && names.organizations == ["system:nodes"]
        && names.dns_names.is_empty()
        && names.ip_addresses.is_empty()
        && names.other_names.is_empty()
        && !names.is_ca;
    (usages_ok && shape_ok).then_some(names.common_name)
}

/// Whether the requester of `csr` may create `certificatesigningrequests/<subresource>`,
/// asked of the API server's authorizers.
async fn allowed(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::ByteString;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn csr(
        cn: &str,
        org: &str,
        san: bool,
        signer: &str,
        usages: &[&str],
    ) -> CertificateSigningRequest {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        if san {
            params.subject_alt_names = vec![SanType::DnsName("n1".try_into().unwrap())];
        }
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_node_client_certificate_requests_are_considered() {
        let client = &["digital signature", "client auth"];
        let kubelet = APISERVER_CLIENT_KUBELET;
        let cases = [
            (
                "a node client",
                csr("system:node:n1", "system:nodes", false, kubelet, client),
                true,
            ),
            (
                "another signer",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    false,
                    "kubernetes.io/kube-apiserver-client",
                    client,
                ),
                false,
            ),
            (
                "not a node",
                csr("alice", "system:nodes", false, kubelet, client),
                false,
            ),
            (
                "other group",
                csr("system:node:n1", "system:masters", false, kubelet, client),
                false,
            ),
            (
                "with names",
                csr("system:node:n1", "system:nodes", true, kubelet, client),
                false,
            ),
            (
                "server usage",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    false,
                    kubelet,
                    &["digital signature", "server auth"],
                ),
                false,
            ),
        ];
        for (name, csr, want) in cases {
            assert_eq!(node_client(&csr).is_some(), want, "{name}");
        }
    }
}
