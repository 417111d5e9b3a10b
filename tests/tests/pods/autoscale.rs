//! `kubectl autoscale` under real CPU load: the HPA reads the pods' CPU from kybern's own
//! metrics.k8s.io (scraped from the agent's cgroup figures), scales a Deployment up while
//! a pod burns CPU and back down once it stops (the scale-down stabilization window
//! shortened through the HPA's `behavior`); `kubectl get hpa` shows TARGETS as
//! percentages and `kubectl top pod --containers` the real container's usage.
//!
//! The HPA syncs every 15 s and the metrics have a 15 s resolution, as upstream's defaults,
//! so this test takes a minute or two.

use crate::io::running;
use crate::{at, Node, BUSYBOX};

/// The Deployment's `spec.replicas`, as the HPA sets it.
fn replicas(node: &Node) -> String {
    let out = node
        .kubectl
        .output(&["get", "deployment", "x", "-o", "jsonpath={.spec.replicas}"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_replicas(node: &Node, want: &str) {
    node.eventually(&format!("deployment x at {want} replicas"), || {
        let got = replicas(node);
        let hpa = node.kubectl.output(&["get", "hpa", "x"]);
        (got == want).then_some(()).ok_or(format!(
            "{got} replicas; {}",
            String::from_utf8_lossy(&hpa.stdout)
        ))
    });
}

#[test]
fn kubectl_autoscale_scales_a_deployment_up_under_cpu_load_and_back_down_after_it() {
    let node = Node::start(&[]);
    // Each pod idles until /tmp/burn exists, then spins its shell; the limit keeps a
    // burning pod at a fifth of a core, still 400 % of its 50m request.
    node.apply(
        "x.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  replicas: 1
  selector:
    matchLabels: {{app: x}}
  template:
    metadata:
      labels: {{app: x}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'while :; do if [ -e /tmp/burn ]; then :; else sleep 1; fi; done']
        resources:
          requests: {{cpu: 50m, memory: 16Mi}}
          limits: {{cpu: 200m, memory: 64Mi}}
"#
        ),
    );
    let pod = node.eventually("the Deployment's pod", || {
        let out = node.kubectl.output(&[
            "get",
            "pods",
            "-l",
            "app=x",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let names = String::from_utf8_lossy(&out.stdout).into_owned();
        (names.split_whitespace().count() == 1)
            .then(|| names.trim().to_string())
            .ok_or(names)
    });
    running(&node, &pod, 0);
    node.run(&[
        "autoscale",
        "deployment",
        "x",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    // A scale-down stabilization window of seconds rather than upstream's default 5 minutes.
    node.run(&[
        "patch",
        "hpa.v2.autoscaling",
        "x",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":3}}}}"#,
    ]);
    node.run(&["exec", &pod, "--", "touch", "/tmp/burn"]);

    // `kubectl top pod --containers` shows the real container's usage.
    let top = node.eventually("kubectl top pod --containers", || {
        let out = node.kubectl.output(&["top", "pod", &pod, "--containers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status
            .success()
            .then_some(text)
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let lines: Vec<Vec<&str>> = top
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(&["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"][..]),
        "{top}"
    );
    let row = lines.get(1).expect("a row for the container");
    assert_eq!((row[0], row[1]), (pod.as_str(), "main"), "{top}");
    assert!(row[2].ends_with('m'), "CPU in millicores: {top}");
    assert!(
        row[3].ends_with("Mi") || row[3].ends_with("Ki"),
        "memory: {top}"
    );

    wait_for_replicas(&node, "3");
    // TARGETS: the current utilization over the target, as percentages.
    let hpa = node.run(&["get", "hpa", "x"]);
    let header: Vec<&str> = hpa
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let targets = hpa.lines().nth(1).unwrap_or("");
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{hpa}"
    );
    assert!(
        targets.contains("Deployment/x") && targets.contains("cpu: ") && targets.contains("%/50%"),
        "{hpa}"
    );

    node.run(&["exec", &pod, "--", "rm", "/tmp/burn"]);
    wait_for_replicas(&node, "1");
    let status = node.run(&["get", "hpa.v2.autoscaling", "x", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(at(&status, "/status/desiredReplicas"), "1", "{status}");
    let events = node.run(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    for want in [
        "New size: 3; reason: cpu resource utilization (percentage of request) above target",
        "New size: 1; reason: All metrics below target",
    ] {
        assert!(events.contains(want), "{want:?} in {events}");
    }
}
