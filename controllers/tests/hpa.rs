//! The HorizontalPodAutoscaler loop: with no samples in metrics.k8s.io it still keeps
//! its target's replicas within [minReplicas, maxReplicas] through `/scale` and says in
//! its conditions why it does nothing more; with PodMetrics served it scales on them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus};
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kybern_testkit::fixtures::deployment;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn condition(hpa: &HorizontalPodAutoscaler, type_: &str) -> Option<(String, String)> {
    let c = hpa
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn replicas(c: &Cluster) -> Option<i32> {
    let d = c.api::<Deployment>().get("web").await.ok()?;
    d.spec?.replicas
}

/// The autoscaler `web`, or why it could not be read.
async fn get_hpa(c: &Cluster) -> Result<HorizontalPodAutoscaler, String> {
    c.api::<HorizontalPodAutoscaler>()
        .get("web")
        .await
        .map_err(|e| e.to_string())
}

/// A Deployment `web` of `replicas` whose container requests `requests`, and an
/// autoscaler `web` for it aiming at 50 % CPU, with `spec` merged into its spec.
async fn create_web(
    c: &Cluster,
    replicas: i32,
    requests: Option<serde_json::Value>,
    spec: serde_json::Value,
) {
    let mut web = deployment("web", replicas, "nginx");
    if let Some(requests) = requests {
        let pod = web.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        pod.containers[0].resources =
            Some(serde_json::from_value(json!({ "requests": requests })).unwrap());
    }
    c.api::<Deployment>()
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    let mut hpa = json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    });
    for (k, v) in spec.as_object().unwrap() {
        hpa["spec"][k] = v.clone();
    }
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(hpa).unwrap();
    c.api::<HorizontalPodAutoscaler>()
        .create(&PostParams::default(), &hpa)
        .await
        .unwrap();
}

/// The messages of the SuccessfulRescale events so far.
async fn rescales(c: &Cluster) -> Vec<String> {
    let events = c.api::<Event>().list(&ListParams::default()).await.unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SuccessfulRescale"))
        .filter_map(|e| e.message)
        .collect()
}

/// One round of a metric-driven test: pods use `cores` each from `t0` on, the
/// autoscaler is nudged (the `n`th time) and read back.
async fn sync_on(
    c: &Cluster,
    cores: f64,
    t0: i64,
    n: u32,
) -> Result<(HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus), String> {
    feed_samples(c, cores, t0).await;
    nudge(c, n).await;
    let hpa = get_hpa(c).await?;
    let status = hpa.status.clone().unwrap_or_default();
    Ok((hpa, status))
}

/// A change to the autoscaler brings a sync at once instead of after the 15 s period.
async fn nudge(c: &Cluster, n: u32) {
    c.api::<HorizontalPodAutoscaler>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/nudge": n.to_string()}}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_without_metrics_keeps_its_target_within_min_and_max() {
    let c = Cluster::start("hpa", &["horizontalpodautoscaling"], 0).await;
    create_web(&c, 1, None, json!({"minReplicas": 2, "maxReplicas": 4})).await;

    eventually("scaled up to minReplicas", || async {
        let hpa = get_hpa(&c).await?;
        let s = hpa.status.clone().unwrap_or_default();
        let done =
            replicas(&c).await == Some(2) && s.desired_replicas == 2 && s.last_scale_time.is_some();
        done.then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let rescaled = rescales(&c).await;
    assert!(
        rescaled
            .iter()
            .any(|m| m == "New size: 2; reason: Current number of replicas below Spec.MinReplicas"),
        "{rescaled:?}"
    );

    // Within range, the next sync finds no metric to act on.
    eventually("ScalingActive False for want of a metric", || async {
        let hpa = get_hpa(&c).await?;
        let s = hpa.status.clone().unwrap_or_default();
        let done = s.current_replicas == Some(2)
            && condition(&hpa, "ScalingActive")
                == Some(("False".into(), "FailedGetResourceMetric".into()))
            && condition(&hpa, "AbleToScale") == Some(("True".into(), "SucceededGetScale".into()));
        done.then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    assert_eq!(
        replicas(&c).await,
        Some(2),
        "no metric, no change within range"
    );

    c.kubectl(&["scale", "deployment", "web", "--replicas=9"]);
    nudge(&c, 1).await;
    eventually("scaled down to maxReplicas", || async {
        let got = replicas(&c).await;
        (got == Some(4)).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
}

/// Feeds the in-process server's metrics.k8s.io, as scrapes of one node would: every
/// live pod's container `c` uses `cores` (a cumulative counter growing at that rate)
/// and 50 MiB.
async fn feed_samples(c: &Cluster, cores: f64, t0: i64) {
    let now_ms = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let mut text = String::new();
    for pod in c.live_pods().await {
        let name = pod.metadata.name.unwrap_or_default();
        let labels = format!("container=\"c\",namespace=\"{}\",pod=\"{name}\"", c.ns);
        let cpu = cores * (now_ms - t0) as f64 / 1000.0;
        text.push_str(&format!(
            "container_cpu_usage_seconds_total{{{labels}}} {cpu} {now_ms}\n\
             container_memory_working_set_bytes{{{labels}}} 52428800 {now_ms}\n"
        ));
    }
    let scrape = apiserver::api::metrics::parse(&text, now_ms);
    c.apiserver().metrics.record("node-1", scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_scales_a_deployment_up_on_the_cpu_its_pods_use() {
    let c = Cluster::builder("hpa-cpu")
        .loops(&["deployment", "replicaset", "horizontalpodautoscaling"])
        .ready_pods()
        .start()
        .await;
    create_web(
        &c,
        1,
        Some(json!({"cpu": "100m", "memory": "64Mi"})),
        json!({"minReplicas": 1, "maxReplicas": 5}),
    )
    .await;

    // Each pod uses 200m of its 100m request: 200 % against 50 %, four times the
    // target. From 1 replica the first step is capped at max(2 x 1, 4) = 4, the next
    // at maxReplicas 5.
    let t0 = k8s_openapi::jiff::Timestamp::now().as_millisecond() - 60_000;
    let mut n = 0;
    let status = eventually("scaled up to maxReplicas on cpu", || {
        n += 1;
        let c = &c;
        let n = n;
        async move {
            let (hpa, s) = sync_on(c, 0.2, t0, n).await?;
            let done = replicas(c).await == Some(5)
                && s.desired_replicas == 5
                && condition(&hpa, "ScalingLimited")
                    == Some(("True".into(), "TooManyReplicas".into()));
            done.then_some(hpa).ok_or(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(
        condition(&status, "ScalingActive"),
        Some(("True".into(), "ValidMetricFound".into()))
    );
    let current = status.status.unwrap().current_metrics.unwrap_or_default();
    let cpu = current[0].resource.as_ref().unwrap();
    assert_eq!(
        (cpu.name.as_str(), cpu.current.average_utilization),
        ("cpu", Some(200)),
        "{current:?}"
    );
    let table = c.kubectl(&["get", "hpa", "web"]);
    assert!(table.contains("cpu: 200%/50%"), "{table}");
    let rescaled = rescales(&c).await;
    assert!(
        rescaled.iter().any(|m| {
            m
            == "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        }),
        "{rescaled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_with_a_zero_scale_down_window_scales_down_at_once() {
    let c = Cluster::builder("hpa-down")
        .loops(&["deployment", "replicaset", "horizontalpodautoscaling"])
        .ready_pods()
        .start()
        .await;
    create_web(
        &c,
        4,
        Some(json!({"cpu": "100m"})),
        json!({"minReplicas": 1, "maxReplicas": 5,
               "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}),
    )
    .await;

    // First at 50m of 100m, on target: the autoscaler recommends the 4 it has.
    let t0 = k8s_openapi::jiff::Timestamp::now().as_millisecond() - 60_000;
    let mut n = 0;
    eventually("a recommendation of 4 on target", || {
        n += 1;
        let c = &c;
        let n = n;
        async move {
            let (_, s) = sync_on(c, 0.05, t0, n).await?;
            let utilization = s
                .current_metrics
                .as_deref()
                .and_then(|m| m.first()?.resource.as_ref()?.current.average_utilization);
            let done = utilization == Some(50) && s.desired_replicas == 4;
            done.then_some(()).ok_or(format!("{s:?}"))
        }
    })
    .await;
    // Then at 10m, 10 % against 50 %: ceil(4 x 0.2) = 1. The default 300 s window would
    // hold the recent 4; with none, and the default 100 % policy, it goes at once.
    let hpa = eventually("scaled down to 1 at once", || {
        n += 1;
        let c = &c;
        let n = n;
        async move {
            let (hpa, s) = sync_on(c, 0.01, t0, n).await?;
            let done = replicas(c).await == Some(1) && s.desired_replicas == 1;
            done.then_some(hpa).ok_or(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(
        condition(&hpa, "ScalingLimited"),
        Some(("False".into(), "DesiredWithinRange".into()))
    );
    let rescaled = rescales(&c).await;
    assert!(
        rescaled
            .iter()
            .any(|m| m == "New size: 1; reason: All metrics below target"),
        "{rescaled:?}"
    );
}
