use serde_json::json;

use super::*;

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn a_node_may_set_only_the_kubelets_own_kubernetes_labels() {
    let cases = [
        (
            "its hostname, os and arch",
            json!({"kubernetes.io/hostname": "a", "kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}),
            json!({}),
            vec![],
        ),
        (
            "labels of its own domain",
            json!({"example.com/rack": "r1", "plain": "x"}),
            json!({}),
            vec![],
        ),
        (
            "node.kubernetes.io and kubelet.kubernetes.io labels",
            json!({"node.kubernetes.io/exclude-from-external-load-balancers": "", "kubelet.kubernetes.io/x": "y"}),
            json!({}),
            vec![],
        ),
        (
            "a node-restriction label",
            json!({"node-restriction.kubernetes.io/secure": "true"}),
            json!({}),
            vec!["node-restriction.kubernetes.io/secure"],
        ),
        (
            "a role label",
            json!({"node-role.kubernetes.io/control-plane": ""}),
            json!({}),
            vec!["node-role.kubernetes.io/control-plane"],
        ),
        (
            "a k8s.io label removed",
            json!({}),
            json!({"example.k8s.io/x": "y"}),
            vec!["example.k8s.io/x"],
        ),
        (
            "an unchanged forbidden label",
            json!({"node-role.kubernetes.io/worker": ""}),
            json!({"node-role.kubernetes.io/worker": ""}),
            vec![],
        ),
    ];
    for (name, new, old, want) in cases {
        assert_eq!(forbidden_labels(&labels(new), &labels(old)), want, "{name}");
    }
}

#[test]
fn a_node_writes_only_its_own_node_and_never_its_taints() {
    let node = |labels: Value, taints: Value| json!({"metadata": {"name": "a", "labels": labels}, "spec": {"taints": taints}});
    let plain = node(json!({}), json!([]));
    let cases = [
        (
            "another node",
            "b",
            Operation::Update,
            plain.clone(),
            Some(plain.clone()),
            Err("node \"a\" is not allowed to modify node \"b\"".to_string()),
        ),
        (
            "its own node",
            "a",
            Operation::Update,
            node(json!({"kubernetes.io/hostname": "a"}), json!([])),
            Some(plain.clone()),
            Ok(()),
        ),
        (
            "its own taints",
            "a",
            Operation::Update,
            node(json!({}), json!([{"key": "k", "effect": "NoSchedule"}])),
            Some(plain.clone()),
            Err("node \"a\" is not allowed to modify taints".to_string()),
        ),
        (
            "a registration with taints",
            "a",
            Operation::Create,
            node(json!({}), json!([{"key": "k", "effect": "NoSchedule"}])),
            None,
            Ok(()),
        ),
        (
            "a registration with a restricted label",
            "a",
            Operation::Create,
            node(json!({"node-restriction.kubernetes.io/x": "y"}), json!([])),
            None,
            Err("node \"a\" is not allowed to set the following labels: node-restriction.kubernetes.io/x".to_string()),
        ),
        (
            "an update adding a restricted label",
            "a",
            Operation::Update,
            node(json!({"node-restriction.kubernetes.io/x": "y"}), json!([])),
            Some(plain.clone()),
            Err("is not allowed to modify labels: node-restriction.kubernetes.io/x".to_string()),
        ),
    ];
    for (name, requested, op, obj, old, want) in cases {
        assert_eq!(
            node_object("a", requested, op, &obj, old.as_ref()),
            want,
            "{name}"
        );
    }
}

#[test]
fn a_node_updates_the_status_of_its_own_pods_only() {
    let pod = |node: &str, labels: Value| json!({"metadata": {"name": "p", "labels": labels}, "spec": {"nodeName": node}});
    assert_eq!(
        pod_status("a", &pod("a", json!({})), &pod("a", json!({}))),
        Ok(())
    );
    assert_eq!(
        pod_status("a", &pod("b", json!({})), &pod("b", json!({}))),
        Err(
            "node \"a\" can only update pod status for pods with spec.nodeName set to itself"
                .into()
        )
    );
    assert_eq!(
        pod_status("a", &pod("a", json!({"x": "y"})), &pod("a", json!({}))),
        Err("node \"a\" cannot update labels through pod status".into())
    );
}

#[test]
fn a_node_requests_tokens_only_for_pods_bound_to_itself() {
    let node = UserInfo {
        name: "system:node:a".into(),
        groups: vec!["system:nodes".into()],
        ..Default::default()
    };
    let pod =
        |node: &str| json!({"metadata": {"name": "p", "uid": "u1"}, "spec": {"nodeName": node}});
    let (on_a, on_b) = (pod("a"), pod("b"));
    let to_pod = Some(("v1", "Pod", "p", "u1"));
    let cases = [
        (
            "no binding",
            None,
            None,
            Some("node requested token not bound to a pod"),
        ),
        (
            "bound to a secret",
            Some(("v1", "Secret", "s", "u2")),
            None,
            Some("node requested token not bound to a pod"),
        ),
        (
            "a pod binding without a uid",
            Some(("v1", "Pod", "p", "")),
            None,
            Some("node requested token with a pod binding without a uid"),
        ),
        ("its pod", to_pod, Some(&on_a), None),
        (
            "another node's pod",
            to_pod,
            Some(&on_b),
            Some("node requested token bound to a pod scheduled on a different node"),
        ),
    ];
    for (name, reference, pod, want) in cases {
        let got = token_request(&node, "default", BoundObject { reference, pod });
        let message = got.err().map(|e| e.to_string());
        assert_eq!(
            message,
            want.map(|w| format!("serviceaccounts \"default\" is forbidden: {w}")),
            "{name}"
        );
    }
}
