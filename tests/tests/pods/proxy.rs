//! `kubectl proxy` and `kubectl get --raw` to the test server in a real pod: the API
//! server's `pods/proxy` and `services/proxy` reach the pod's address on the node's
//! bridge (a service through its ready endpoint).

use crate::io::{http_get, running, serving_kubectl};
use crate::{common, Node, TESTSERVER};

/// `kubectl proxy --port=0`: the port it serves on ("Starting to serve on
/// 127.0.0.1:PORT") and its guard.
fn kubectl_proxy(node: &Node) -> (u16, common::ChildGuard) {
    let mut cmd = node.kubectl.command();
    cmd.args(["proxy", "--port=0"]);
    serving_kubectl(cmd, "kubectl proxy")
}

#[test]
fn kubectl_proxy_and_get_raw_reach_the_test_server_through_its_pod_and_its_service() {
    let node = Node::start(&[]);
    node.apply(
        "web.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TESTSERVER}
    imagePullPolicy: IfNotPresent
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: websvc
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#
        ),
    );
    running(&node, "web", 0);
    let raw = "/api/v1/namespaces/default/services/websvc:http/proxy/echo?msg=via-get-raw";
    // The service proxies once the pod is a ready endpoint.
    let answer = node.eventually("the service proxy answering", || {
        let out = node.kubectl.output(&["get", "--raw", raw]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert_eq!(
        answer, "via-get-raw",
        "kubectl get --raw through the service"
    );

    let (port, _proxy) = kubectl_proxy(&node);
    let cases = [
        (
            "the pod by port number",
            "/api/v1/namespaces/default/pods/web:8080/proxy/hostname",
            "web",
        ),
        (
            "the pod by port name, with a query",
            "/api/v1/namespaces/default/pods/web:http/proxy/echo?msg=to-the-pod",
            "to-the-pod",
        ),
        (
            "the service by port name",
            "/api/v1/namespaces/default/services/websvc:http/proxy/hostname",
            "web",
        ),
        (
            "the service by port number",
            "/api/v1/namespaces/default/services/websvc:80/proxy/echo?msg=to-the-service",
            "to-the-service",
        ),
    ];
    for (name, path, want) in cases {
        let body = http_get(port, path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(body, want, "{name}: GET {path} through kubectl proxy");
    }
}
