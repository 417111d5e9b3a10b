//! metrics.k8s.io served by kybern itself: `kubectl top` against the in-process server,
//! whose scrape loop reads each node's `/metrics/resource` through a fake scraper.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apiserver::api::metrics::{scrape_loop, NodeScraper};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use crate::common::{eventually, Cluster};

/// A node that uses 0.5 cores and 1 GiB, running pod `web` whose `app` uses 0.25 cores
/// and 100 MiB and `side` 0.05 cores and 20 MiB: every scrape is 10 s after the last.
struct FakeKubelet {
    scrapes: AtomicI64,
    ns: String,
}

#[async_trait::async_trait]
impl NodeScraper for FakeKubelet {
    async fn resource_metrics(&self, node: &Value) -> anyhow::Result<String> {
        assert_eq!(node["metadata"]["name"], "node-1");
        let n = self.scrapes.fetch_add(1, Ordering::SeqCst) as f64;
        let ts = 1_700_000_000_000i64 + n as i64 * 10_000;
        let ns = &self.ns;
        Ok(format!(
            "# TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{{container=\"app\",namespace=\"{ns}\",pod=\"web\"}} {} {ts}\n\
             container_cpu_usage_seconds_total{{container=\"side\",namespace=\"{ns}\",pod=\"web\"}} {} {ts}\n\
             container_memory_working_set_bytes{{container=\"app\",namespace=\"{ns}\",pod=\"web\"}} {} {ts}\n\
             container_memory_working_set_bytes{{container=\"side\",namespace=\"{ns}\",pod=\"web\"}} {} {ts}\n\
             node_cpu_usage_seconds_total {} {ts}\n\
             node_memory_working_set_bytes {} {ts}\n",
            n * 2.5,
            n * 0.5,
            100u64 << 20,
            20u64 << 20,
            n * 5.0,
            1u64 << 30,
        ))
    }
}

/// The whitespace-separated cells of the line whose first cell is `first`.
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(first))
        .unwrap_or_default()
}

// kubectl blocks this thread while the in-process server answers it from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_shows_node_pod_and_container_usage_from_scraped_samples() {
    let c = Cluster::builder("top").start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": {"cpu": "4", "memory": "8Gi"},
                "allocatable": {"cpu": "4", "memory": "8Gi"},
            }})),
        )
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]},
    }))
    .unwrap();
    c.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    // Before any sample, kubectl says what metrics-server makes it say.
    let early = c.kubectl_output(&["top", "pod"]);
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(
        !early.status.success() && stderr.contains("metrics not available yet"),
        "{stderr}"
    );

    let scraper = Arc::new(FakeKubelet {
        scrapes: AtomicI64::new(0),
        ns: c.ns.clone(),
    });
    let task = tokio::spawn(scrape_loop(
        Arc::downgrade(c.apiserver()),
        scraper,
        Duration::from_millis(200),
    ));

    let nodes_table = eventually("kubectl top node", || async {
        let out = c.kubectl_output(&["top", "node"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .ok_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await;
    assert_eq!(
        row(&nodes_table, "node-1"),
        ["node-1", "500m", "12%", "1024Mi", "12%"],
        "{nodes_table}"
    );

    let pods_table = c.kubectl(&["top", "pod", "-l", "app=web"]);
    assert_eq!(
        row(&pods_table, "web"),
        ["web", "300m", "120Mi"],
        "{pods_table}"
    );
    let containers = c.kubectl(&["top", "pod", "web", "--containers"]);
    let lines: Vec<Vec<String>> = containers
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(
        lines,
        [
            ["web", "app", "250m", "100Mi"],
            ["web", "side", "50m", "20Mi"]
        ],
        "{containers}"
    );
    let none = c.kubectl_output(&["top", "pod", "-l", "app=other"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found"),
        "a selector matching no pod: {}",
        String::from_utf8_lossy(&none.stderr)
    );

    // The objects themselves, as clients read them.
    let raw = c.kubectl(&[
        "get",
        "--raw",
        &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods/web", c.ns),
    ]);
    let obj: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(obj["kind"], "PodMetrics", "{raw}");
    assert_eq!(obj["window"], "10s", "{raw}");
    assert_eq!(obj["metadata"]["labels"]["app"], "web", "{raw}");
    assert_eq!(
        obj["containers"][0],
        json!({"name": "app", "usage": {"cpu": "250m", "memory": "100Mi"}}),
        "{raw}"
    );
    let everywhere: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb",
    ]))
    .unwrap();
    assert_eq!(everywhere["kind"], "PodMetricsList", "{everywhere}");
    assert_eq!(
        everywhere["items"][0]["metadata"]["namespace"], c.ns,
        "{everywhere}"
    );
    let unscoped = c.kubectl_output(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods/web"]);
    assert!(
        String::from_utf8_lossy(&unscoped.stderr).contains("NotFound"),
        "a pod is named only within its namespace: {}",
        String::from_utf8_lossy(&unscoped.stderr)
    );
    let table = c.kubectl(&["get", "nodes.metrics.k8s.io"]);
    assert_eq!(
        row(&table, "node-1")[..3],
        ["node-1", "500m", "1Gi"],
        "{table}"
    );
    let missing = c.kubectl_output(&["top", "pod", "nope"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    task.abort();
}
