//! The service proxy's behaviour as users rely on it: session affinity, endpoints that
//! follow scaling and readiness, services without endpoints refused at once, hairpin
//! traffic, hand-made endpoints, and the API server at `kubernetes.default.svc`.

use std::collections::BTreeSet;

use crate::{server_pod, service, TwoNodes, TESTSERVER};

/// The hostnames `n` connections from the outside client to `addr` reached.
fn hostnames_reached(two: &TwoNodes, addr: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| match two.from_outside(&["get", addr, "/hostname"]) {
            (true, host) => Some(host),
            (false, _) => None,
        })
        .collect()
}

#[test]
fn session_affinity_keeps_a_client_on_one_endpoint() {
    let two = TwoNodes::start();
    let spec = "  type: NodePort\n  sessionAffinity: ClientIP\n";
    two.apply(
        "web.yaml",
        &[
            server_pod("a", &two.nodes[0], "web"),
            server_pod("b", &two.nodes[1], "web"),
            service("sticky", "web", spec),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["a", "b"]);
    let node_port = two.service_field("sticky", "{.spec.ports[0].nodePort}");
    let addr = format!("{}:{node_port}", two.node_ip(0));
    two.outside_gets(&addr, "/hostname");
    let reached = hostnames_reached(&two, &addr, 50);
    assert_eq!(
        reached.len(),
        1,
        "50 connections from one client: {reached:?}"
    );
}

#[test]
fn scaling_a_deployment_changes_the_endpoints_reached() {
    let two = TwoNodes::start();
    two.apply(
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {TESTSERVER}
        imagePullPolicy: IfNotPresent
        readinessProbe:
          httpGet: {{path: /ready, port: 8080}}
          periodSeconds: 1
---
{}"#,
            service("web", "web", "  type: NodePort\n")
        ),
    );
    let node_port = two.service_field("web", "{.spec.ports[0].nodePort}");
    let addr = format!("{}:{node_port}", two.node_ip(0));
    for replicas in [3, 1, 3] {
        two.run(&["scale", "deployment/web", &format!("--replicas={replicas}")]);
        two.run(&["rollout", "status", "deployment/web", "--timeout=120s"]);
        let ready: BTreeSet<String> = two.pod_ips("web").into_iter().map(|(n, _)| n).collect();
        two.eventually(&format!("{replicas} endpoints reached"), || {
            let reached = hostnames_reached(&two, &addr, 30);
            (reached.len() == replicas && reached.is_subset(&ready))
                .then_some(())
                .ok_or(format!("reached {reached:?}, ready {ready:?}"))
        });
    }
}

#[test]
fn an_unready_pod_leaves_the_rotation_and_comes_back() {
    let two = TwoNodes::start();
    two.apply(
        "web.yaml",
        &[
            server_pod("a", &two.nodes[0], "web"),
            server_pod("b", &two.nodes[1], "web"),
            service("web", "web", "  type: NodePort\n"),
        ]
        .join("---\n"),
    );
    let ips = two.wait_pods_ready(&["a", "b"]);
    let node_port = two.service_field("web", "{.spec.ports[0].nodePort}");
    let addr = format!("{}:{node_port}", two.node_ip(0));
    let both: BTreeSet<String> = ["a", "b"].map(String::from).into();
    two.eventually("both pods reached", || {
        let reached = hostnames_reached(&two, &addr, 20);
        (reached == both)
            .then_some(())
            .ok_or(format!("{reached:?}"))
    });
    // b's readiness probe fails from now on.
    two.outside_gets(&format!("{}:8080", ips[1]), "/ready/toggle");
    two.eventually("only a reached", || {
        let reached = hostnames_reached(&two, &addr, 20);
        (reached.len() == 1 && reached.contains("a"))
            .then_some(())
            .ok_or(format!("{reached:?}"))
    });
    two.outside_gets(&format!("{}:8080", ips[1]), "/ready/toggle");
    two.eventually("both pods reached again", || {
        let reached = hostnames_reached(&two, &addr, 20);
        (reached == both)
            .then_some(())
            .ok_or(format!("{reached:?}"))
    });
}

#[test]
fn a_service_without_endpoints_is_refused_not_left_to_time_out() {
    let two = TwoNodes::start();
    two.apply(
        "client.yaml",
        &[
            server_pod("client", &two.nodes[0], "client"),
            service("empty", "nothing-has-this-label", ""),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["client"]);
    let ip = two.service_field("empty", "{.spec.clusterIP}");
    // busybox's timeout bounds a connect that would hang: a timeout is the failure shown.
    // UDP goes to a port the Service does not have: refused too (ICMP port unreachable,
    // which a connected UDP socket reports; a host-unreachable error it would ignore).
    for (proto, args) in [
        ("tcp", vec!["get", &format!("{ip}:80"), "/"] as Vec<&str>),
        ("udp", vec!["udp", &format!("{ip}:9000"), "hello"]),
    ] {
        let addr = args[1].to_string();
        let mut all = vec!["exec", "client", "--", "timeout", "20", "/testserver"];
        all.extend_from_slice(&args);
        two.eventually(&format!("{proto} to {addr} refused"), || {
            let out = two.kubectl.output(&all);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            let refused = ["refused", "unreachable", "No route to host"]
                .iter()
                .any(|m| err.contains(m));
            (!out.status.success() && refused).then_some(()).ok_or(err)
        });
    }
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let two = TwoNodes::start();
    two.apply(
        "self.yaml",
        &[
            server_pod("alone", &two.nodes[0], "alone"),
            service("alone", "alone", ""),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["alone"]);
    let ip = two.service_field("alone", "{.spec.clusterIP}");
    let host = two.pod_gets("alone", &format!("{ip}:80"), "/hostname");
    assert_eq!(host, "alone", "hairpin through the ClusterIP");
}

#[test]
fn hand_made_endpoints_and_slices_are_honoured() {
    let two = TwoNodes::start();
    two.apply(
        "backend.yaml",
        &[
            server_pod("backend", &two.nodes[1], "backend"),
            server_pod("client", &two.nodes[0], "client"),
        ]
        .join("---\n"),
    );
    let ips = two.wait_pods_ready(&["backend", "client"]);
    let backend = &ips[0];
    two.apply(
        "manual.yaml",
        &format!(
            r#"{}---
apiVersion: v1
kind: Endpoints
metadata:
  name: by-endpoints
subsets:
- addresses: [{{ip: {backend}}}]
  ports: [{{name: http, port: 8080, protocol: TCP}}]
---
{}---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: by-slice-1
  labels: {{kubernetes.io/service-name: by-slice}}
addressType: IPv4
endpoints:
- addresses: [{backend}]
  conditions: {{ready: true}}
ports: [{{name: http, port: 8080, protocol: TCP}}]
"#,
            service("by-endpoints", "", ""),
            service("by-slice", "", ""),
        ),
    );
    for name in ["by-endpoints", "by-slice"] {
        let ip = two.service_field(name, "{.spec.clusterIP}");
        let host = two.pod_gets("client", &format!("{ip}:80"), "/hostname");
        assert_eq!(host, "backend", "{name}");
    }
}

#[test]
fn pods_reach_the_apiserver_at_kubernetes_default_svc() {
    let two = TwoNodes::start();
    two.apply(
        "client.yaml",
        &server_pod("client", &two.nodes[1], "client"),
    );
    two.wait_pods_ready(&["client"]);
    let hello = two.eventually("a TLS answer from kubernetes.default.svc", || {
        match two.from_pod("client", &["tls-hello", "kubernetes.default.svc:443"]) {
            (true, answer) => Ok(answer),
            (false, err) => Err(err),
        }
    });
    assert!(hello.starts_with("handshake"), "{hello}");
    // Requests with the pod's own token: `tokens.rs`.
}
