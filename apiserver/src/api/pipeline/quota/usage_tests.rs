use serde_json::json;

use super::*;

fn list(pairs: &[(&str, &str)]) -> ResourceList {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity::parse(v).unwrap()))
        .collect()
}

fn pod(containers: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn objects_use_what_upstreams_evaluators_count() {
    let cases = [
        (
            "a best-effort pod counts once",
            "",
            "pods",
            pod(json!([{"name": "c"}])),
            list(&[("count/pods", "1"), ("pods", "1")]),
        ),
        (
            "a pod's requests and limits sum over containers",
            "",
            "pods",
            pod(json!([
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "150m", "memory": "64Mi"}}}
            ])),
            list(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("cpu", "250m"),
                ("requests.cpu", "250m"),
                ("memory", "128Mi"),
                ("requests.memory", "128Mi"),
                ("limits.cpu", "200m"),
            ]),
        ),
        (
            "a limit without a request is also the request",
            "",
            "pods",
            pod(json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}])),
            list(&[
                ("count/pods", "1"),
                ("pods", "1"),
                ("memory", "1Gi"),
                ("requests.memory", "1Gi"),
                ("limits.memory", "1Gi"),
            ]),
        ),
        (
            "a finished pod keeps only its object count",
            "",
            "pods",
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}}),
            list(&[("count/pods", "1")]),
        ),
        (
            "a NodePort service counts its ports",
            "",
            "services",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
            list(&[
                ("count/services", "1"),
                ("services", "1"),
                ("services.nodeports", "2"),
            ]),
        ),
        (
            "a LoadBalancer service counts a load balancer and node ports",
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            list(&[
                ("count/services", "1"),
                ("services", "1"),
                ("services.nodeports", "1"),
                ("services.loadbalancers", "1"),
            ]),
        ),
        (
            "a claim counts its storage, also per class",
            "",
            "persistentvolumeclaims",
            json!({"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "5Gi"}}}}),
            list(&[
                ("count/persistentvolumeclaims", "1"),
                ("persistentvolumeclaims", "1"),
                ("requests.storage", "5Gi"),
                ("gold.storageclass.storage.k8s.io/requests.storage", "5Gi"),
                (
                    "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
                    "1",
                ),
            ]),
        ),
        (
            "a configmap has a legacy count",
            "",
            "configmaps",
            json!({}),
            list(&[("count/configmaps", "1"), ("configmaps", "1")]),
        ),
        (
            "a deployment counts as count/deployments.apps",
            "apps",
            "deployments",
            json!({}),
            list(&[("count/deployments.apps", "1")]),
        ),
    ];
    for (name, group, plural, obj, want) in cases {
        assert_eq!(usage(group, plural, &obj), want, "{name}");
    }
}

#[test]
fn init_containers_raise_the_pod_request_to_their_own() {
    let p = json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}, {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]
    }});
    assert_eq!(usage("", "pods", &p)["requests.cpu"].to_string(), "2");
}

#[test]
fn quota_scopes_select_pods() {
    let terminating = json!({"spec": {"activeDeadlineSeconds": 30, "containers": [{"name": "a"}]}});
    let burstable = json!({"spec": {"priorityClassName": "high", "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
    let hard = list(&[("pods", "10")]);
    let cases = [
        ("no scope matches every pod", json!({}), &terminating, true),
        (
            "Terminating matches a pod with a deadline",
            json!({"scopes": ["Terminating"]}),
            &terminating,
            true,
        ),
        (
            "NotTerminating skips a pod with a deadline",
            json!({"scopes": ["NotTerminating"]}),
            &terminating,
            false,
        ),
        (
            "BestEffort matches a pod without requests",
            json!({"scopes": ["BestEffort"]}),
            &terminating,
            true,
        ),
        (
            "NotBestEffort skips a pod without requests",
            json!({"scopes": ["NotBestEffort"]}),
            &terminating,
            false,
        ),
        (
            "NotBestEffort matches a pod with requests",
            json!({"scopes": ["NotBestEffort"]}),
            &burstable,
            true,
        ),
        (
            "PriorityClass In matches the named class",
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
            &burstable,
            true,
        ),
        (
            "PriorityClass In skips a pod without a class",
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
            &terminating,
            false,
        ),
        (
            "PriorityClass NotIn skips the named class",
            json!({"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "NotIn", "values": ["high"]}]}}),
            &burstable,
            false,
        ),
    ];
    for (name, spec, pod, want) in cases {
        let quota = json!({"spec": spec});
        assert_eq!(
            quota_matches(&quota, &hard, "", "pods", pod),
            want,
            "{name}"
        );
    }
    let scoped = json!({"spec": {"scopes": ["BestEffort"]}});
    assert!(
        !quota_matches(
            &scoped,
            &list(&[("count/configmaps", "1")]),
            "",
            "configmaps",
            &json!({})
        ),
        "a scoped quota applies to pods only"
    );
}

#[test]
fn a_quota_on_compute_requires_every_container_to_state_it() {
    let p = pod(json!([
        {"name": "a", "resources": {"requests": {"cpu": "1"}}},
        {"name": "b"}
    ]));
    let required: BTreeSet<&str> = ["requests.cpu", "limits.memory", "pods"].into();
    assert_eq!(
        pod_constraints(&p, &required),
        Err("must specify limits.memory for: a,b; requests.cpu for: b".to_string())
    );
    let only_pods: BTreeSet<&str> = ["pods"].into();
    assert_eq!(pod_constraints(&p, &only_pods), Ok(()));
}
