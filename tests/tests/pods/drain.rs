//! `kubectl drain` of a real node under a PodDisruptionBudget: the eviction API lets one
//! replica go (its container is stopped), refuses the other while the budget is spent,
//! and drain keeps retrying until its timeout; the node stays cordoned until uncordoned.

use crate::{at, Node, BUSYBOX};

fn pods(node: &Node) -> Vec<serde_json::Value> {
    let out = node.run(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn running_names(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = pods(node)
        .iter()
        .filter(|p| {
            at(p, "/status/phase") == "Running" && at(p, "/metadata/deletionTimestamp").is_empty()
        })
        .map(|p| at(p, "/metadata/name"))
        .collect();
    names.sort();
    names
}

#[test]
fn kubectl_drain_evicts_what_the_budget_allows_and_waits_on_the_rest() {
    let node = Node::start(&[]);
    node.apply(
        "web.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        imagePullPolicy: IfNotPresent
        command: [sleep, '3600']
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels: {{app: web}}
"#
        ),
    );
    let before = node.eventually("both replicas running", || {
        let names = running_names(&node);
        (names.len() == 2)
            .then_some(names.clone())
            .ok_or(format!("{names:?}"))
    });
    node.eventually("the budget allows one disruption", || {
        let pdb: serde_json::Value =
            serde_json::from_str(&node.run(&["get", "pdb", "web", "-o", "json"])).unwrap();
        (at(&pdb, "/status/disruptionsAllowed") == "1")
            .then_some(())
            .ok_or(pdb["status"].to_string())
    });

    let drain = node
        .kubectl
        .output(&["drain", &node.name, "--ignore-daemonsets", "--timeout=15s"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&drain.stdout),
        String::from_utf8_lossy(&drain.stderr)
    );
    assert!(!drain.status.success(), "the drain cannot finish:\n{said}");
    assert!(
        said.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{said}"
    );
    assert!(
        said.contains(&format!("node/{} cordoned", node.name)),
        "{said}"
    );

    // One of the two is gone, the other still runs; the replacement waits for a node.
    let after = running_names(&node);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(before.contains(&after[0]), "{before:?} {after:?}");
    let pending: Vec<_> = pods(&node)
        .into_iter()
        .filter(|p| at(p, "/status/phase") == "Pending")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let unschedulable = node.run(&[
        "get",
        "node",
        &node.name,
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(unschedulable, "true");

    // Back in service: the replacement runs, the budget has room again.
    node.run(&["uncordon", &node.name]);
    node.eventually("two replicas running again", || {
        let names = running_names(&node);
        (names.len() == 2).then_some(()).ok_or(format!("{names:?}"))
    });
}
