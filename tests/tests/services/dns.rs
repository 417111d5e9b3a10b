//! Cluster DNS as programs in pods use it: the C library with the pod's resolv.conf and
//! search list (`testserver resolve`).

use crate::{server_pod, TwoNodes, OUTSIDE_TEST, TESTSERVER};

#[test]
fn statefulset_pods_resolve_by_their_stable_names() {
    let two = TwoNodes::start();
    two.apply(
        "web.yaml",
        &format!(
            r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector: {{app: sts}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 2
  selector:
    matchLabels: {{app: sts}}
  template:
    metadata:
      labels: {{app: sts}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {TESTSERVER}
        imagePullPolicy: IfNotPresent
"#
        ),
    );
    let ips = two.wait_pods_ready(&["web-0", "web-1"]);
    for (asker, (name, ip)) in [("web-1", ("web-0", &ips[0])), ("web-0", ("web-1", &ips[1]))] {
        for query in [
            format!("{name}.nginx.default.svc.cluster.local"),
            format!("{name}.nginx"),
        ] {
            let answer = two.eventually(&format!("{asker} resolving {query}"), || {
                match two.from_pod(asker, &["resolve", &query]) {
                    (true, out) => Ok(out),
                    (false, err) => Err(err),
                }
            });
            assert_eq!(answer.trim(), ip.as_str(), "{asker} resolving {query}");
        }
    }
    let (_, all) = two.from_pod("web-0", &["resolve", "nginx"]);
    let mut all: Vec<&str> = all.lines().collect();
    all.sort();
    let mut want: Vec<&str> = ips.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(all, want, "the headless service names every ready pod");
}

/// `name` resolved from pod `pod` until it resolves; its addresses.
fn resolved(two: &TwoNodes, pod: &str, name: &str) -> String {
    two.eventually(&format!("{pod} resolving {name}"), || {
        match two.from_pod(pod, &["resolve", name]) {
            (true, out) => Ok(out),
            (false, err) => Err(err),
        }
    })
}

#[test]
fn non_cluster_names_are_answered_by_the_fake_upstream_and_cached() {
    let two = TwoNodes::start();
    two.apply(
        "client.yaml",
        &server_pod("client", &two.nodes[1], "client"),
    );
    two.wait_pods_ready(&["client"]);
    assert_eq!(resolved(&two, "client", "outside.test"), OUTSIDE_TEST);
    assert_eq!(resolved(&two, "client", "outside.test"), OUTSIDE_TEST);
    let questions = two.upstream_questions();
    let asked_a = questions.iter().filter(|q| *q == "outside.test 1").count();
    assert_eq!(
        asked_a, 1,
        "two lookups, one upstream question: {questions:?}"
    );
    assert!(
        !questions.iter().any(|q| q.contains("cluster.local")),
        "cluster names never reach the upstream: {questions:?}"
    );
}

#[test]
fn an_external_name_service_resolves_as_a_cname_to_its_target() {
    let two = TwoNodes::start();
    two.apply(
        "ext.yaml",
        &[
            server_pod("client", &two.nodes[0], "client"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  type: ExternalName\n  externalName: outside.test\n".to_string(),
        ]
        .join("---\n"),
    );
    two.wait_pods_ready(&["client"]);
    for name in ["ext", "ext.default.svc.cluster.local"] {
        assert_eq!(resolved(&two, "client", name), OUTSIDE_TEST, "{name}");
    }
}
