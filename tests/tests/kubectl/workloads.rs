//! Workloads end to end: the real `kybern server` (every control loop in-process), the
//! real `kybern agent --simulate 3` as a second process, and the real kubectl, as a
//! user would drive them: create a Deployment, change its image, watch the rollout,
//! undo it, scale it, delete it with each cascade, and delete a namespace full of
//! workloads.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{kybern_binary, Backend, ChildGuard, Kubectl};
use crate::Cluster;

/// `kybern server` plus simulated nodes; the agent is killed by pid when dropped.
struct Workloads {
    cluster: Cluster,
    _agent: ChildGuard,
    kubectl: Kubectl,
}

impl Workloads {
    async fn start(nodes: usize) -> Self {
        let cluster = Cluster::start(Backend::Embedded).await;
        let kubeconfig = cluster.server.as_ref().unwrap().kubeconfig.clone();
        let log = std::fs::File::create(cluster.dir.path().join("agent.log")).unwrap();
        let agent = Command::new(kybern_binary())
            .args(["agent", "--simulate", &nodes.to_string(), "--kubeconfig"])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kybern agent --simulate");
        let kubectl = cluster.kubectl();
        let w = Workloads {
            cluster,
            _agent: ChildGuard(agent),
            kubectl,
        };
        w.eventually(&format!("{nodes} Ready nodes"), || {
            let out = w.kubectl.output(&["get", "nodes", "--no-headers"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ready = text
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count();
            (ready == nodes).then_some(()).ok_or(text)
        });
        w
    }

    fn run(&self, args: &[&str]) -> String {
        self.kubectl.run(args)
    }

    /// Polls `check` every 200 ms for up to 60 s.
    fn eventually(&self, what: &str, mut check: impl FnMut() -> Result<(), String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match check() {
                Ok(()) => return,
                Err(state) if Instant::now() > deadline => {
                    let log =
                        std::fs::read_to_string(self.cluster.dir.path().join("data/server.log"))
                            .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    panic!("timed out waiting for {what}; last state:\n{state}\nserver log tail (newest first):\n{}", tail.join("\n"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// `kubectl get KIND -n NS -o jsonpath=PATH`.
    fn jsonpath(&self, ns: &str, what: &[&str], path: &str) -> String {
        let mut args = vec!["get", "-n", ns];
        args.extend_from_slice(what);
        let expr = format!("-o=jsonpath={path}");
        args.push(&expr);
        self.run(&args)
    }

    /// `kubectl get ... -n NS -o json`: the items that are not being deleted.
    fn live(&self, ns: &str, what: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["get", "-n", ns];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let list: serde_json::Value =
            serde_json::from_str(&self.run(&args)).expect("kubectl prints JSON");
        list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }

    /// (name, node, phase, image) of the live pods in `ns` with label `app=<app>`.
    fn pods(&self, ns: &str, app: &str) -> Vec<(String, String, String, String)> {
        let selector = format!("app={app}");
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        self.live(ns, &["pods", "-l", &selector])
            .iter()
            .map(|p| {
                (
                    text(&p["metadata"]["name"]),
                    text(&p["spec"]["nodeName"]),
                    text(&p["status"]["phase"]),
                    text(&p["spec"]["containers"][0]["image"]),
                )
            })
            .collect()
    }

    fn rollout_status(&self, ns: &str, what: &str) {
        // Deployments say "successfully rolled out", StatefulSets "roll out complete" (a
        // defaulted rollingUpdate has a partition) and DaemonSets "successfully rolled out".
        let out = self.run(&["rollout", "status", "-n", ns, what, "--timeout=90s"]);
        assert!(
            out.contains("successfully rolled out") || out.contains("roll out complete"),
            "rollout status {what}: {out}"
        );
    }

    /// Every live `app=<app>` pod runs `image` on a simulated node, and there are `n`.
    fn expect_pods(&self, ns: &str, app: &str, n: usize, image: &str) {
        self.eventually(&format!("{n} Running {app} pods of {image}"), || {
            let pods = self.pods(ns, app);
            let good = pods
                .iter()
                .filter(|(_, node, phase, img)| {
                    node.starts_with("sim-") && phase == "Running" && img == image
                })
                .count();
            (good == n && pods.len() == n)
                .then_some(())
                .ok_or(format!("{pods:?}"))
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_a_deployment_through_its_life_on_simulated_nodes() {
    let w = Workloads::start(3).await;
    w.run(&["create", "namespace", "shop"]);
    w.run(&[
        "create",
        "deployment",
        "web",
        "-n",
        "shop",
        "--image=busybox:1",
        "--replicas=3",
    ]);
    w.rollout_status("shop", "deployment/web");
    w.expect_pods("shop", "web", 3, "busybox:1");

    // `kubectl create deployment` names the container after the image.
    w.run(&[
        "set",
        "image",
        "-n",
        "shop",
        "deployment/web",
        "busybox=busybox:2",
    ]);
    w.rollout_status("shop", "deployment/web");
    w.expect_pods("shop", "web", 3, "busybox:2");
    let history = w.run(&["rollout", "history", "-n", "shop", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|r| r.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    w.run(&["rollout", "undo", "-n", "shop", "deployment/web"]);
    w.rollout_status("shop", "deployment/web");
    w.expect_pods("shop", "web", 3, "busybox:1");

    w.run(&["scale", "-n", "shop", "deployment/web", "--replicas=5"]);
    w.rollout_status("shop", "deployment/web");
    w.expect_pods("shop", "web", 5, "busybox:1");
    let ready = w.jsonpath(
        "shop",
        &["deployment", "web"],
        "{.status.readyReplicas}/{.status.availableReplicas}",
    );
    assert_eq!(ready, "5/5");

    // Orphan: the Deployment goes; its ReplicaSets and pods stay, without an owner.
    w.run(&[
        "delete",
        "-n",
        "shop",
        "deployment/web",
        "--cascade=orphan",
        "--wait=true",
    ]);
    let rss = w.live("shop", &["replicasets"]);
    assert_eq!(rss.len(), 2, "both revisions' ReplicaSets remain: {rss:?}");
    for rs in &rss {
        assert!(
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "orphaned ReplicaSets have no owner: {rs}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let pods = w.pods("shop", "web");
    if pods.len() != 5 {
        let events = w.run(&["get", "events", "-n", "shop"]);
        let all = w.run(&["get", "pods", "-n", "shop", "-o", "yaml"]);
        let log = std::fs::read_to_string(w.cluster.dir.path().join("data/server.log"))
            .unwrap_or_default();
        panic!("orphaning keeps the pods: {pods:?}\nevents:\n{events}\npods:\n{all}\nlog:\n{log}");
    }

    // Foreground: kubectl returns once the Deployment is gone, and by then its
    // ReplicaSets and pods are gone too (the Deployment waited for them).
    w.run(&[
        "create",
        "deployment",
        "fg",
        "-n",
        "shop",
        "--image=busybox:1",
        "--replicas=2",
    ]);
    w.rollout_status("shop", "deployment/fg");
    w.run(&[
        "delete",
        "-n",
        "shop",
        "deployment/fg",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=60s",
    ]);
    let left = w.live("shop", &["replicasets,pods", "-l", "app=fg"]);
    assert!(
        left.is_empty(),
        "foreground deletion leaves no dependents behind: {left:?}"
    );

    // Background (the default): the ReplicaSet orphaned above is adopted by nobody and
    // deleting it takes its pods with it.
    w.run(&[
        "delete",
        "-n",
        "shop",
        "replicasets",
        "--all",
        "--wait=true",
    ]);
    w.eventually("the orphaned pods to go with their ReplicaSets", || {
        let pods = w.pods("shop", "web");
        pods.is_empty().then_some(()).ok_or(format!("{pods:?}"))
    });
}

const NAMESPACE_WORKLOADS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: doomed}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: doomed}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: doomed}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: busybox:1}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: report, namespace: doomed}
spec:
  completions: 1
  template:
    metadata:
      labels: {app: report}
      annotations: {kybern.io/simulate-ready: \"false\"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox:1}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_deployment_statefulset_and_job() {
    let w = Workloads::start(2).await;
    w.run(&["create", "namespace", "doomed"]);
    let manifest = w.cluster.manifest("doomed.yaml", NAMESPACE_WORKLOADS);
    w.run(&["apply", "-f", manifest.to_str().unwrap()]);
    w.rollout_status("doomed", "deployment/web");
    w.rollout_status("doomed", "statefulset/db");
    w.eventually("the job's pod to run", || {
        let pods = w.pods("doomed", "report");
        pods.iter()
            .any(|p| p.2 == "Running")
            .then_some(())
            .ok_or(format!("{pods:?}"))
    });
    let claims = w.live("doomed", &["persistentvolumeclaims"]);
    assert_eq!(
        claims.len(),
        2,
        "one claim per StatefulSet replica: {claims:?}"
    );

    // kubectl waits for the namespace itself to disappear, which happens only after
    // everything in it is gone and the namespace controller drops its finalizer.
    w.run(&[
        "delete",
        "namespace",
        "doomed",
        "--wait=true",
        "--timeout=90s",
    ]);
    let out = w.kubectl.output(&["get", "namespace", "doomed"]);
    assert!(!out.status.success(), "the namespace is gone");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let everything = w.run(&[
        "get",
        "pods,replicasets,deployments,statefulsets,jobs,persistentvolumeclaims,services",
        "-n",
        "doomed",
        "-o",
        "name",
    ]);
    assert_eq!(everything.trim(), "", "nothing of the namespace is left");
}
