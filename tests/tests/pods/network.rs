//! A Deployment of the test server: its pods get addresses of the node's podCIDR, answer
//! HTTP there from a network namespace of the test's own, see the cluster DNS in their
//! resolv.conf; scaled to zero, nothing is left on the node.

use crate::{at, Node, TESTSERVER};

#[test]
fn a_deployment_of_the_test_server_answers_on_its_pod_ips() {
    let node = Node::start(&[]);
    // The node as registered.
    let n: serde_json::Value =
        serde_json::from_str(&node.run(&["get", "node", &node.name, "-o", "json"])).unwrap();
    assert!(
        at(&n, "/status/nodeInfo/containerRuntimeVersion").starts_with("containerd://"),
        "{n}"
    );
    assert!(
        at(&n, "/status/nodeInfo/kubeletVersion").contains("+kybern-"),
        "{n}"
    );
    assert_eq!(
        at(&n, "/metadata/labels/kubernetes.io~1hostname"),
        node.name
    );
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(at(&n, "/status/capacity/cpu"), cpus);
    node.run(&["get", "lease", "-n", "kube-node-lease", &node.name]);

    node.apply(
        "web.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: server
        image: {TESTSERVER}
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 8080}}]
"#
        ),
    );
    node.run(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let pods: serde_json::Value =
        serde_json::from_str(&node.run(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let prefix = node_prefix(&n);
    let mut ips = std::collections::BTreeSet::new();
    for pod in items {
        let name = at(pod, "/metadata/name");
        let ip = at(pod, "/status/podIP");
        assert!(
            ip.starts_with(&prefix),
            "pod {name} has {ip}, outside {prefix}0/24"
        );
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        assert_eq!(at(pod, "/status/phase"), "Running");
        assert_eq!(at(pod, "/status/qosClass"), "BestEffort");
        assert!(at(pod, "/status/containerStatuses/0/containerID").starts_with("containerd://"));
        let (ok, body) = node
            .client()
            .get(&node.testserver, &format!("{ip}:8080"), "/hostname");
        assert!(
            ok,
            "GET http://{ip}:8080/hostname from the test's namespace: {body}"
        );
        assert_eq!(body.trim(), name, "the pod's hostname is its name");
        let (ok, resolv) = node.client().get(
            &node.testserver,
            &format!("{ip}:8080"),
            "/file?path=/etc/resolv.conf",
        );
        assert!(ok, "{resolv}");
        assert!(
            resolv.contains(&format!("nameserver {}", node.cluster_dns()))
                && resolv.contains("search default.svc.cluster.local"),
            "{resolv}"
        );
        let (ok, hosts) = node.client().get(
            &node.testserver,
            &format!("{ip}:8080"),
            "/file?path=/etc/hosts",
        );
        assert!(ok && hosts.contains(&format!("{ip}\t{name}")), "{hosts}");
    }
    assert_eq!(node.pod_links().len(), 3, "one veth per pod on the bridge");

    node.run(&["scale", "deployment/web", "--replicas=0"]);
    node.eventually("every pod gone", || {
        let left = node.run(&["get", "pods", "-o", "name"]);
        left.trim().is_empty().then_some(()).ok_or(left)
    });
    node.eventually("nothing left on the node", || {
        let (links, containers, mounts) =
            (node.pod_links(), node.runtime_containers(), node.mounts());
        (links.is_empty() && containers.is_empty() && mounts.is_empty())
            .then_some(())
            .ok_or(format!(
                "links {links:?} containers {containers:?} mounts {mounts:?}"
            ))
    });
}

/// "10.42.N." of the node's podCIDR.
fn node_prefix(node: &serde_json::Value) -> String {
    let cidr = at(node, "/spec/podCIDR");
    let base = cidr.split('/').next().unwrap();
    base.rsplit_once('.').map(|(p, _)| format!("{p}.")).unwrap()
}
