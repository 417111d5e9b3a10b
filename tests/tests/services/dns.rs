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

/// busybox's `nslookup ARGS` in pod `pod` (the testserver image carries busybox): it asks
/// the pod's nameserver itself, one question per call, so what it prints is exactly what
/// the cluster DNS answered.
fn nslookup(two: &TwoNodes, pod: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", pod, "--", "/bin/busybox", "nslookup"];
    all.extend_from_slice(args);
    let out = two.kubectl.output(&all);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn srv_ptr_nxdomain_and_nodata_answers_are_right_from_a_pod() {
    let two = TwoNodes::start();
    two.apply(
        "web.yaml",
        &[
            server_pod("web", &two.nodes[1], "web"),
            server_pod("client", &two.nodes[0], "client"),
            crate::service("web", "web", ""),
        ]
        .join("---\n"),
    );
    let ips = two.wait_pods_ready(&["web", "client"]);
    let cluster_ip = two.service_field("web", "{.spec.clusterIP}");
    let fqdn = "web.default.svc.cluster.local";
    // The pod's endpoint is visible once the slice says it is ready.
    let srv = two.eventually("the SRV record of web's http port", || {
        let out = nslookup(
            &two,
            "client",
            &["-type=srv", &format!("_http._tcp.{fqdn}")],
        );
        out.contains("service = ").then_some(out.clone()).ok_or(out)
    });
    let record: Vec<&str> = srv
        .lines()
        .find_map(|l| l.split_once("service = ").map(|(_, r)| r))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        (record.get(2).copied(), record.get(3).copied()),
        (Some("80"), Some(fqdn)),
        "SRV _http._tcp names the service port and the Service's name (priority weight port target): {srv}"
    );
    let udp = nslookup(
        &two,
        "client",
        &["-type=srv", &format!("_echo._udp.{fqdn}")],
    );
    assert!(
        udp.contains(&format!(" 9000 {fqdn}")),
        "SRV _echo._udp: {udp}"
    );

    for (what, ip, name) in [
        ("the ClusterIP", cluster_ip.clone(), fqdn.to_string()),
        (
            "the pod's address",
            ips[0].clone(),
            format!("{}.{fqdn}", ips[0].replace('.', "-")),
        ),
    ] {
        let out = nslookup(&two, "client", &[&ip]);
        assert!(
            out.contains(&format!("name = {name}")),
            "PTR of {what} {ip} is {name}: {out}"
        );
    }

    let missing = nslookup(&two, "client", &["nosuch.default.svc.cluster.local"]);
    assert!(
        missing.contains("NXDOMAIN"),
        "a missing Service is NXDOMAIN: {missing}"
    );
    // busybox prints only the server for an empty NOERROR answer, and names the rcode
    // (NXDOMAIN, SERVFAIL, REFUSED) or the timeout otherwise.
    let no_data = nslookup(&two, "client", &["-type=aaaa", fqdn]);
    assert!(
        no_data.contains("Server:")
            && ![
                "NXDOMAIN",
                "SERVFAIL",
                "REFUSED",
                "timed out",
                "Address: fd",
                &cluster_ip
            ]
            .iter()
            .any(|bad| no_data.contains(bad)),
        "an IPv4-only Service has no AAAA record but exists (NODATA, not NXDOMAIN): {no_data}"
    );
}
