//! What real policies lean on: variables evaluated only when read (a broken one that
//! no expression reads is harmless), Kubernetes quantities, and the authorizer asking
//! about a service account or the request's own resource.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{apply, binding, deployment, replica_policy};
use crate::common::Cluster;
use crate::podsecurity::{kubectl_with, text};
use crate::{configmap, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_no_expression_reads_does_not_fail_the_policy() {
    let c = Cluster::builder("vap-lazy").start().await;
    let policy = replica_policy(json!({
        "variables": [
            {"name": "pausedAtStart", "expression": "object.spec.paused"},
            {"name": "tooMany", "expression": "object.spec.replicas > 5"}
        ],
        "validations": [{"expression": "!variables.tooMany", "message": "at most 5 replicas"}]
    }));
    apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
    let deployments = c.api::<Deployment>();

    deployments
        .create(&PostParams::default(), &deployment("small", 3))
        .await
        .expect("the unread variable's missing field is no error");
    let s = status(
        deployments
            .create(&PostParams::default(), &deployment("big", 6))
            .await,
    );
    assert!(
        s.message.ends_with("denied request: at most 5 replicas"),
        "{}",
        s.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_caps_container_memory_with_kubernetes_quantities() {
    let c = Cluster::builder("vap-quantity").start().await;
    let mut policy = replica_policy(json!({
        "validations": [{
            "expression": "object.spec.containers.all(c, !has(c.resources.limits) || !has(c.resources.limits.memory) || !quantity(c.resources.limits.memory).isGreaterThan(quantity('1Gi')))",
            "messageExpression": "'memory limits are at most 1Gi, ' + object.spec.containers.filter(c, has(c.resources.limits) && has(c.resources.limits.memory)).map(c, c.resources.limits.memory).join(', ') + ' asked'"
        }]
    }));
    policy["spec"]["matchConstraints"]["resourceRules"] = json!([{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]
    }]);
    apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
    let pod = |name: &str, memory: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "busybox",
                        "resources": {"limits": {"memory": memory}}}]}})
    };

    let out = kubectl_with(&c, &["apply", "-f", "-"], &pod("big", "1536Mi"));
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "1536Mi is over 1Gi");
    assert!(
        stderr.contains("denied request: memory limits are at most 1Gi, 1536Mi asked"),
        "{stderr}"
    );
    let out = kubectl_with(&c, &["apply", "-f", "-"], &pod("exact", "1073741824"));
    assert!(
        out.status.success(),
        "1Gi in bytes is 1Gi: {:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_asks_the_authorizer_about_a_service_account_and_the_requests_own_resource() {
    let c = Cluster::builder("vap-authz-sa").start().await;
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "demo-policy.example.com"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]
            }]},
            "validations": [
                {
                    "expression": "authorizer.serviceAccount(object.metadata.namespace, 'cleaner').group('').resource('configmaps').namespace(object.metadata.namespace).check('delete').allowed()",
                    "message": "the cleaner service account must be able to delete it"
                },
                {
                    "expression": "authorizer.requestResource.check('update').allowed()",
                    "message": "whoever creates it must be able to update it"
                }
            ]
        }
    });
    apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
    let configmaps = c.api::<ConfigMap>();
    let s = status(
        configmaps
            .create(&PostParams::default(), &configmap("first", json!({})))
            .await,
    );
    assert!(
        s.message
            .ends_with("denied request: the cleaner service account must be able to delete it"),
        "{}",
        s.message
    );

    let grant = |name: &str, verbs: &[&str], subject: serde_json::Value| {
        let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs}]
        }))
        .unwrap();
        let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject]
        }))
        .unwrap();
        (role, rb)
    };
    for (role, rb) in [
        grant(
            "cleaner",
            &["delete"],
            json!({"kind": "ServiceAccount", "name": "cleaner", "namespace": c.ns}),
        ),
        grant(
            "alice",
            &["create"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}),
        ),
    ] {
        c.api().create(&PostParams::default(), &role).await.unwrap();
        c.api().create(&PostParams::default(), &rb).await.unwrap();
    }
    crate::common::eventually("the cleaner's role to reach the authorizer", || async {
        configmaps
            .create(&PostParams::default(), &configmap("by-admin", json!({})))
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    let alice = crate::common::users::User::new(&c.kubeconfig, "alice", None).await;
    let as_alice = Api::<ConfigMap>::namespaced(alice.client.clone(), &c.ns);
    let s = crate::common::eventually("alice's role to reach the authorizer", || async {
        match as_alice
            .create(&PostParams::default(), &configmap("by-alice", json!({})))
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") => Ok(*s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        s.message
            .ends_with("denied request: whoever creates it must be able to update it"),
        "{}",
        s.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_requires_https_endpoints_with_the_url_library() {
    let c = Cluster::builder("vap-url").start().await;
    let mut policy = replica_policy(json!({
        "validations": [{
            "expression": "!has(object.data) || !has(object.data.endpoint) || (isURL(object.data.endpoint) && url(object.data.endpoint).getScheme() == 'https')",
            "messageExpression": "'endpoint must be an https URL, not ' + object.data.endpoint"
        }]
    }));
    policy["spec"]["matchConstraints"]["resourceRules"] = json!([{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]
    }]);
    apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
    let configmaps = c.api::<ConfigMap>();

    let s = status(
        configmaps
            .create(
                &PostParams::default(),
                &configmap("plain", json!({"endpoint": "http://backend:8080/api"})),
            )
            .await,
    );
    assert!(
        s.message.ends_with(
            "denied request: endpoint must be an https URL, not http://backend:8080/api"
        ),
        "{}",
        s.message
    );
    configmaps
        .create(
            &PostParams::default(),
            &configmap("secure", json!({"endpoint": "https://backend:8443/api"})),
        )
        .await
        .expect("an https endpoint passes");
}
