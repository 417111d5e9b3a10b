//! The policy node joining with bootstrap tokens needs: upstream's
//! `system:node-bootstrapper` and the two certificate auto-approval ClusterRoles, and
//! what kubeadm binds at `init` (the default node-token group may ask for a node client
//! certificate and have it approved, nodes may renew theirs, and `system:anonymous` may
//! read `kube-public/cluster-info`).

use std::sync::Arc;

use http::Method;
use serde_json::json;

use super::roles::{ClusterRole, ClusterRoleBinding, Rule, Subject};
use super::{binding_object, reconcile, role_object};
use crate::api::bootstrap::{get, request, Object};
use crate::api::pipeline::bootstrap_token as bt;
use crate::api::pipeline::rbac::GROUP;
use crate::api::Api;
use crate::status::{ApiError, Result};

pub(super) const NODE_CLIENT: &str =
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
pub(super) const SELF_NODE_CLIENT: &str =
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";
const CLUSTER_INFO_ROLE: &str = "kubeadm:bootstrap-signer-clusterinfo";
const SIGNER_ROLE: &str = "system:controller:bootstrap-signer";
const CLEANER_ROLE: &str = "system:controller:token-cleaner";

/// A rule on CertificateSigningRequests (or one of their subresources).
const fn csr_rule(verbs: &'static [&'static str], resources: &'static [&'static str]) -> Rule {
    Rule {
        verbs,
        groups: &["certificates.k8s.io"],
        resources,
        names: &[],
        urls: &[],
    }
}

pub(super) const CLUSTER_ROLES: &[ClusterRole] = &[
    ClusterRole {
        name: "system:node-bootstrapper",
        labels: &[],
        aggregates: None,
        rules: &[csr_rule(
            &["create", "get", "list", "watch"],
            &["certificatesigningrequests"],
        )],
    },
    ClusterRole {
        name: NODE_CLIENT,
        labels: &[],
        aggregates: None,
        rules: &[csr_rule(
            &["create"],
            &["certificatesigningrequests/nodeclient"],
        )],
    },
    ClusterRole {
        name: SELF_NODE_CLIENT,
        labels: &[],
        aggregates: None,
        rules: &[csr_rule(
            &["create"],
            &["certificatesigningrequests/selfnodeclient"],
        )],
    },
];

/// kubeadm's bindings (`kubeadm init`'s bootstrap-token phase).
pub(super) const CLUSTER_ROLE_BINDINGS: &[ClusterRoleBinding] = &[
    ClusterRoleBinding {
        name: "kubeadm:kubelet-bootstrap",
        role: "system:node-bootstrapper",
        subjects: &[Subject::Group(bt::DEFAULT_NODE_GROUP)],
    },
    ClusterRoleBinding {
        name: "kubeadm:node-autoapprove-bootstrap",
        role: NODE_CLIENT,
        subjects: &[Subject::Group(bt::DEFAULT_NODE_GROUP)],
    },
    ClusterRoleBinding {
        name: "kubeadm:node-autoapprove-certificate-rotation",
        role: SELF_NODE_CLIENT,
        subjects: &[Subject::Group("system:nodes")],
    },
];

/// Creates or reconciles the roles and bindings above, and creates the Roles and
/// RoleBindings that let `system:anonymous` get `kube-public/cluster-info` and the
/// bootstrapsigner and tokencleaner loops reach the token Secrets and cluster-info.
pub(super) async fn ensure(api: &Arc<Api>) -> Result<()> {
    for role in CLUSTER_ROLES {
        reconcile(api, "clusterroles", role_object(role)).await?;
    }
    for binding in CLUSTER_ROLE_BINDINGS {
        reconcile(api, "clusterrolebindings", binding_object(binding)).await?;
    }
    let anonymous = json!([{"apiGroup": GROUP, "kind": "User", "name": "system:anonymous"}]);
    let cluster_info = json!([{"apiGroups": [""], "resources": ["configmaps"],
                               "resourceNames": [bt::CLUSTER_INFO], "verbs": ["get"]}]);
    let roles = [
        (
            bt::CLUSTER_INFO_NAMESPACE,
            CLUSTER_INFO_ROLE,
            cluster_info,
            anonymous,
        ),
        // The loops' namespaced grants, as upstream's bootstrap-signer and token-cleaner
        // Roles (the cluster-wide rest is in `roles/controllers.rs`).
        (
            bt::NAMESPACE,
            SIGNER_ROLE,
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]),
            account("bootstrap-signer"),
        ),
        (
            bt::CLUSTER_INFO_NAMESPACE,
            SIGNER_ROLE,
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create"]},
                   {"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": [bt::CLUSTER_INFO], "verbs": ["update"]}]),
            account("bootstrap-signer"),
        ),
        (
            bt::NAMESPACE,
            CLEANER_ROLE,
            json!([{"apiGroups": [""], "resources": ["secrets"],
                    "verbs": ["delete", "get", "list", "watch"]}]),
            account("token-cleaner"),
        ),
    ];
    for (ns, name, rules, subjects) in roles {
        ensure_role(api, ns, name, rules, subjects).await?;
    }
    Ok(())
}

/// The loop's service account in kube-system as a binding's subjects.
fn account(name: &str) -> serde_json::Value {
    json!([{"kind": "ServiceAccount", "name": name, "namespace": "kube-system"}])
}

/// Creates the Role `name` in `ns` and its RoleBinding of the same name unless they
/// exist (an administrator's edits to them are kept).
async fn ensure_role(
    api: &Arc<Api>,
    ns: &'static str,
    name: &str,
    rules: serde_json::Value,
    subjects: serde_json::Value,
) -> Result<()> {
    let meta = json!({"name": name, "namespace": ns});
    let role = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "Role", "metadata": meta, "rules": rules,
    });
    let binding = json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "RoleBinding", "metadata": meta,
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": name},
        "subjects": subjects,
    });
    for (resource, obj) in [("roles", role), ("rolebindings", binding)] {
        let at = Object {
            group: GROUP,
            namespace: Some(ns),
            resource,
        };
        if get(api, &at, name).await?.is_none() {
            match request(api, Method::POST, &at, None, None, &obj).await {
                Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
