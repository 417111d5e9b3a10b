//! ValidatingAdmissionPolicy as a platform team writes one: a policy and a binding
//! applied with kubectl, CEL validations that deny (upstream's message and code) or
//! warn (`Warning:` lines), params from a ConfigMap, failurePolicy on a runtime error,
//! and expressions that do not compile refused when the policy is written.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::common::Cluster;
use crate::podsecurity::{kubectl_with, text};
use crate::{configmap, status};

mod audit;
mod libraries;
mod typechecking;

/// Waits until the server's cache of `plural`, which admission reads, has `name` as
/// the API has it now.
async fn cached<K>(c: &Cluster, plural: &str, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let object = Api::<K>::all(c.client.clone())
        .get(name)
        .await
        .expect("the object was written");
    crate::webhooks::admission_sees(c, plural, &object).await;
}

/// Applies a policy and its binding with kubectl and waits until admission sees both.
async fn apply(c: &Cluster, policy: Value, binding: Value) {
    for manifest in [&policy, &binding] {
        let out = kubectl_with(c, &["apply", "-f", "-"], manifest);
        assert!(out.status.success(), "kubectl apply: {:?}", text(&out));
    }
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap().to_string();
    cached::<ValidatingAdmissionPolicy>(c, "validatingadmissionpolicies", &name(&policy)).await;
    cached::<ValidatingAdmissionPolicyBinding>(
        c,
        "validatingadmissionpolicybindings",
        &name(&binding),
    )
    .await;
}

/// Upstream's documentation example: at most 5 replicas for a Deployment.
fn replica_policy(extra_spec: Value) -> Value {
    let mut p = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "demo-policy.example.com"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]
            }]},
            "validations": [{"expression": "object.spec.replicas <= 5"}]
        }
    });
    if let (Some(spec), Value::Object(extra)) = (p["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    p
}

fn binding(c: &Cluster, actions: &[&str], extra_spec: Value) -> Value {
    let mut b = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "demo-binding-test.example.com"},
        "spec": {
            "policyName": "demo-policy.example.com",
            "validationActions": actions,
            "matchResources": {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": c.ns
            }}}
        }
    });
    if let (Some(spec), Value::Object(extra)) = (b["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    b
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_applied_with_kubectl_denies_a_deployment_of_six_replicas_with_upstreams_message()
{
    let c = Cluster::builder("vap-deny").start().await;
    apply(
        &c,
        replica_policy(json!({})),
        binding(&c, &["Deny"], json!({})),
    )
    .await;

    let out = c.kubectl_output(&[
        "create",
        "deployment",
        "nginx",
        "--image=nginx",
        "--replicas=6",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "six replicas are refused");
    assert!(
        stderr.contains(
            "deployments.apps \"nginx\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' \
             with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
        ),
        "{stderr}"
    );

    let s = status(
        c.api::<Deployment>()
            .create(&PostParams::default(), &deployment("web", 6))
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");

    let out = c.kubectl_output(&[
        "create",
        "deployment",
        "small",
        "--image=nginx",
        "--replicas=3",
    ]);
    assert!(
        out.status.success(),
        "three replicas pass: {:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warn_binding_lets_the_deployment_in_and_kubectl_prints_the_warning() {
    let c = Cluster::builder("vap-warn").start().await;
    apply(
        &c,
        replica_policy(json!({})),
        binding(&c, &["Warn", "Audit"], json!({})),
    )
    .await;

    let out = c.kubectl_output(&[
        "create",
        "deployment",
        "nginx",
        "--image=nginx",
        "--replicas=6",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "warn does not deny: {stderr}");
    assert!(stdout.contains("deployment.apps/nginx created"), "{stdout}");
    assert!(
        stderr.contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' \
             with binding 'demo-binding-test.example.com': failed expression: object.spec.replicas <= 5"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_from_a_configmap_set_the_limit_and_a_missing_one_denies_as_the_binding_says() {
    let c = Cluster::builder("vap-params").start().await;
    let policy = replica_policy(json!({
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "validations": [{
            "expression": "object.spec.replicas <= int(params.data.maxReplicas)",
            "messageExpression": "'replicas must be at most ' + params.data.maxReplicas",
            "reason": "Forbidden"
        }]
    }));
    let b = binding(
        &c,
        &["Deny"],
        json!({"paramRef": {"name": "replica-limit", "namespace": c.ns, "parameterNotFoundAction": "Deny"}}),
    );
    apply(&c, policy, b).await;
    let deployments = c.api::<Deployment>();

    let s = status(
        deployments
            .create(&PostParams::default(), &deployment("web", 2))
            .await,
    );
    assert_eq!(s.code, 422, "{s:?}");
    assert!(
        s.message.ends_with(
            "denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        ),
        "{}",
        s.message
    );

    c.api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &configmap("replica-limit", json!({"maxReplicas": "3"})),
        )
        .await
        .unwrap();
    let s = crate::common::eventually("the param to be seen", || async {
        match deployments
            .create(&PostParams::default(), &deployment("web", 4))
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("at most") => Ok(*s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"), "{s:?}");
    assert!(
        s.message
            .ends_with("denied request: replicas must be at most 3"),
        "{}",
        s.message
    );
    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .expect("within the param's limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_error_denies_under_fail_and_admits_under_ignore() {
    let cases = [("Fail", true), ("Ignore", false)];
    for (failure_policy, denied) in cases {
        let c = Cluster::builder(&format!("vap-err-{}", failure_policy.to_lowercase()))
            .start()
            .await;
        let policy = replica_policy(json!({
            "failurePolicy": failure_policy,
            "validations": [{"expression": "object.spec.paused == false"}]
        }));
        apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
        let result = c
            .api::<Deployment>()
            .create(&PostParams::default(), &deployment("web", 1))
            .await;
        if denied {
            let s = status(result);
            assert_eq!(s.code, 422, "{failure_policy}: {s:?}");
            assert!(
                s.message.ends_with(
                    "denied request: expression 'object.spec.paused == false' resulted in error: no such key: paused"
                ),
                "{failure_policy}: {}",
                s.message
            );
        } else {
            result.unwrap_or_else(|e| panic!("{failure_policy}: admitted, got {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_whose_expression_does_not_compile_is_refused_with_422() {
    let c = Cluster::builder("vap-invalid").start().await;
    let mut policy = replica_policy(json!({
        "validations": [{"expression": "object.spec.replicas <="}]
    }));
    policy.as_object_mut().unwrap().remove("apiVersion");
    policy.as_object_mut().unwrap().remove("kind");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(policy).unwrap();
    let s = status(
        Api::<ValidatingAdmissionPolicy>::all(c.client.clone())
            .create(&PostParams::default(), &policy)
            .await,
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(
        s.message.starts_with(
            "ValidatingAdmissionPolicy.admissionregistration.k8s.io \"demo-policy.example.com\" is invalid: \
             spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:"
        ),
        "{}",
        s.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_asks_the_authorizer_what_the_requesting_user_may_do() {
    let c = Cluster::builder("vap-authz").start().await;
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "demo-policy.example.com"},
        "spec": {
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]
            }]},
            "validations": [{
                "expression": "authorizer.group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()",
                "message": "only users who may list secrets create configmaps here"
            }]
        }
    });
    apply(&c, policy, binding(&c, &["Deny"], json!({}))).await;
    let role: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(json!({
        "metadata": {"name": "configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]
    }))
    .unwrap();
    c.api().create(&PostParams::default(), &role).await.unwrap();
    let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    }))
    .unwrap();
    c.api().create(&PostParams::default(), &rb).await.unwrap();
    let alice = crate::common::users::User::new(&c.kubeconfig, "alice", None).await;

    c.api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("by-admin", json!({})))
        .await
        .expect("the admin may list secrets");
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
    assert_eq!(s.code, 422, "{s:?}");
    assert!(
        s.message
            .ends_with("denied request: only users who may list secrets create configmaps here"),
        "{}",
        s.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_refuses_everything_cannot_stop_its_own_change_or_removal() {
    let c = Cluster::builder("vap-exempt").start().await;
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "refuse-all.example.com"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]
            }]},
            "validations": [{"expression": "false", "message": "nothing passes"}]
        }
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "refuse-all-binding.example.com"},
        "spec": {"policyName": "refuse-all.example.com", "validationActions": ["Deny"]}
    });
    apply(&c, policy, binding).await;
    let refused = c
        .api::<ConfigMap>()
        .create(&PostParams::default(), &configmap("cm", json!({})))
        .await;
    assert_eq!(status(refused).code, 422, "the policy judges ConfigMaps");

    // As upstream: policies never judge policies or their bindings.
    for (kind, name) in [
        ("validatingadmissionpolicy", "refuse-all.example.com"),
        (
            "validatingadmissionpolicybinding",
            "refuse-all-binding.example.com",
        ),
    ] {
        let labelled = c.kubectl_output(&["label", kind, name, "fixed=yes"]);
        assert!(
            labelled.status.success(),
            "labelling {kind}: {:?}",
            text(&labelled)
        );
    }
    for (kind, name) in [
        (
            "validatingadmissionpolicybinding",
            "refuse-all-binding.example.com",
        ),
        ("validatingadmissionpolicy", "refuse-all.example.com"),
    ] {
        let deleted = c.kubectl_output(&["delete", kind, name]);
        assert!(
            deleted.status.success(),
            "deleting {kind}: {:?}",
            text(&deleted)
        );
    }
}
