//! A chart shaped like an operator's (tests/charts/operator): its own Namespace, admission
//! webhook configurations, and a CRD whose instance carries the operator's finalizer.
//! Installed and removed both by Helm and by `kubectl apply -f` / `kubectl delete -f` of its
//! rendered output, as GitOps tools and people do; every step must succeed with no error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{path_str, test_chart, Cluster};

const NAMESPACE: &str = "operator-system";
const CRD: &str = "crd/widgets.operator.example.com";

/// Plays the operator's part in deletion: removes its finalizer from every Widget that is
/// being deleted, as the real operator would once its clean-up is done. Stops on drop.
struct Operator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Operator {
    fn start(c: &Cluster) -> Operator {
        let stop = Arc::new(AtomicBool::new(false));
        let kubectl = c.kubectl();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let deleting = "{range .items[?(@.metadata.deletionTimestamp)]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}";
            while !stopping.load(Ordering::Relaxed) {
                let out = kubectl.output(&[
                    "get",
                    "widgets.operator.example.com",
                    "-A",
                    "-o",
                    &format!("jsonpath={deleting}"),
                ]);
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if let Some((ns, name)) = line.split_once(' ') {
                        kubectl.output(&[
                            "patch",
                            "widgets.operator.example.com",
                            name,
                            "-n",
                            ns,
                            "--type=merge",
                            "-p",
                            r#"{"metadata":{"finalizers":null}}"#,
                        ]);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Operator {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits (up to a minute) until `kubectl get <what>` finds nothing.
fn wait_gone(c: &Cluster, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c
            .kubectl()
            .output(&["get", what, "-o", "name", "--ignore-not-found"]);
        if out.status.success() && out.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} is still there a minute after its deletion: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The chart's objects that outlive nothing: each must exist after an install.
const OBJECTS: &[&str] = &[
    "namespace/operator-system",
    "mutatingwebhookconfiguration.admissionregistration.k8s.io/op-operator",
    "validatingwebhookconfiguration.admissionregistration.k8s.io/op-operator",
    "clusterrole.rbac.authorization.k8s.io/op-operator",
    "clusterrolebinding.rbac.authorization.k8s.io/op-operator",
];

#[test]
fn helm_installs_and_uninstalls_an_operator_chart_with_webhooks_finalizers_and_its_namespace() {
    let c = Cluster::start();
    let chart = test_chart("operator");
    let installed = c.helm(&["install", "op", path_str(&chart)]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    for object in OBJECTS {
        assert_eq!(c.names(object), [*object], "helm install created {object}");
    }
    let finalizers = c.kubectl().run(&[
        "get",
        "widget.operator.example.com/default",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert_eq!(finalizers, r#"["operator.example.com/cleanup"]"#);

    let operator = Operator::start(&c);
    c.helm(&["uninstall", "op"]);
    wait_gone(&c, &format!("namespace/{NAMESPACE}"));
    drop(operator);
    for object in OBJECTS {
        wait_gone(&c, object);
    }
    // As upstream: CRDs from a chart's crds/ folder are never deleted by Helm.
    assert_eq!(c.names(CRD).len(), 1);
}

#[test]
fn kubectl_applies_diffs_and_deletes_an_operator_charts_rendered_manifests() {
    let c = Cluster::start();
    let chart = test_chart("operator");
    let dir = c.dir.path();
    let crds = dir.join("crds.yaml");
    let rendered = dir.join("rendered.yaml");
    std::fs::write(&crds, c.helm(&["show", "crds", path_str(&chart)])).unwrap();
    std::fs::write(&rendered, c.helm(&["template", "op", path_str(&chart)])).unwrap();
    let k = c.kubectl();

    // CRDs first, as upstream asks: the instances' kind must be known when they are applied.
    k.run(&["apply", "-f", path_str(&crds)]);
    k.run(&["wait", "--for=condition=Established", CRD, "--timeout=60s"]);
    k.run(&["apply", "-f", path_str(&rendered)]);
    for object in OBJECTS {
        assert_eq!(c.names(object), [*object], "kubectl apply created {object}");
    }
    // The manifests' empty values (`annotations: {}`, `tolerations: []`...) are not stored,
    // so kubectl's patch re-sends them, as it does against upstream; what matters is that the
    // server then changes nothing.
    let generation = |k: &crate::common::Kubectl| {
        k.run(&[
            "get",
            "deployment/operator",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.metadata.generation}",
        ])
    };
    let before = generation(&k);
    k.run(&["apply", "-f", path_str(&rendered)]);
    assert_eq!(generation(&k), before, "a re-apply changes no spec");
    let diff = k.output(&["diff", "-f", path_str(&rendered)]);
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "kubectl diff after a re-apply shows a difference (exit {}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // GitOps tools apply server-side; a re-apply then diffs to nothing.
    let ssa = [
        "--server-side",
        "--force-conflicts",
        "--field-manager=gitops",
    ];
    let mut apply = vec!["apply", "-f", path_str(&rendered)];
    apply.extend(ssa);
    k.run(&apply);
    k.run(&apply);
    let diff = k.output(&[
        "diff",
        "--server-side",
        "--force-conflicts",
        "--field-manager=gitops",
        "-f",
        path_str(&rendered),
    ]);
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "kubectl diff --server-side after a re-apply shows a difference (exit {}):\n{}{}",
        diff.status,
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );

    // Deleting the manifests deletes their namespace too; nothing may answer NotFound.
    let operator = Operator::start(&c);
    k.run(&["delete", "-f", path_str(&rendered), "--timeout=120s"]);
    wait_gone(&c, &format!("namespace/{NAMESPACE}"));
    k.run(&["delete", "-f", path_str(&crds), "--timeout=120s"]);
    drop(operator);
    wait_gone(&c, CRD);
}
