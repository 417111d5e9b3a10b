//! Upstream's replica calculation, row by row (figures in millicores; requests 1000m).

use super::*;

fn now() -> Timestamp {
    Timestamp::from_second(1_700_000_000).unwrap()
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

/// A Running pod, ready for an hour, requesting 1000m.
fn pod(name: &str) -> PodInfo {
    PodInfo {
        name: name.into(),
        phase: "Running".into(),
        deleting: false,
        ready: Some((true, ago(3600))),
        start_time: Some(ago(3600)),
        request: Ok(1000),
    }
}

fn metric(value: i64) -> PodMetric {
    PodMetric {
        value,
        timestamp: ago(5),
        window: SignedDuration::from_secs(15),
    }
}

/// Pods p0.. with these usages (`None`: no sample).
fn pods_with(usages: &[Option<i64>]) -> (Vec<PodInfo>, BTreeMap<String, PodMetric>) {
    let mut pods = Vec::new();
    let mut metrics = BTreeMap::new();
    for (i, u) in usages.iter().enumerate() {
        let name = format!("p{i}");
        pods.push(pod(&name));
        if let Some(u) = u {
            metrics.insert(name, metric(*u));
        }
    }
    (pods, metrics)
}

struct Row {
    name: &'static str,
    current: i32,
    target: Target,
    resource: &'static str,
    pods: Vec<PodInfo>,
    metrics: BTreeMap<String, PodMetric>,
    want: Result<(i32, Option<i32>), &'static str>,
}

fn row(
    name: &'static str,
    current: i32,
    target: Target,
    usages: &[Option<i64>],
    want: Result<(i32, Option<i32>), &'static str>,
) -> Row {
    let (pods, metrics) = pods_with(usages);
    Row {
        name,
        current,
        target,
        resource: "cpu",
        pods,
        metrics,
        want,
    }
}

#[test]
fn replicas_follow_upstreams_calculation() {
    let mut rows = vec![
        // 1500m of 3000m is 50 % against 30 %: ceil(3 x 50/30) = 5.
        row("scale up on utilization", 3, Target::Utilization(30), &[Some(300), Some(500), Some(700)], Ok((5, Some(50)))),
        // 28 % against 50 %: ceil(5 x 0.56) = 3.
        row("scale down on utilization", 5, Target::Utilization(50), &[Some(100), Some(300), Some(500), Some(250), Some(250)], Ok((3, Some(28)))),
        // 101 % against 100 % is within the 10 % tolerance.
        row("within tolerance nothing changes", 3, Target::Utilization(100), &[Some(1000), Some(1000), Some(1050)], Ok((3, Some(101)))),
        // 10 % without the missing pod; counted at its full request: 1300/4000 = 32 %,
        // ceil(4 x 32/50) = 3.
        row("a pod without a sample counts as its request when scaling down", 4, Target::Utilization(50), &[Some(100), Some(100), Some(100), None], Ok((3, Some(10)))),
        // 100 % without it; counted as 0: 2000/3000 = 66 %, ceil(3 x 66/50) = 4.
        row("a pod without a sample counts as nothing when scaling up", 3, Target::Utilization(50), &[Some(1000), Some(1000), None], Ok((4, Some(100)))),
        // 5 % without it; with it at its request 1050/2000 = 52 %, within tolerance of
        // 50 %, so nothing changes.
        row("a guess that lands within tolerance changes nothing", 2, Target::Utilization(50), &[Some(50), None], Ok((2, Some(5)))),
        // Exactly on target without them: upstream guesses for missing pods only when
        // the others lean one way, so nothing changes (not ceil(4 x 500/4000) = 1).
        row("pods without samples change nothing when the others are exactly on target", 4, Target::Utilization(50), &[Some(500), None, None, None], Ok((4, Some(50)))),
        row("no samples at all", 3, Target::Utilization(50), &[None, None, None], Err("unable to get metrics for resource cpu: no metrics returned from resource metrics API")),
        // 300Mi each against 200Mi: ceil(2 x 1.5) = 3.
        row("average value", 2, Target::AverageValue(200 << 20), &[Some(300 << 20), Some(300 << 20)], Ok((3, None))),
    ];

    // Unready pods hold back a scale-up: 1200/2000 = 60 % over the ready ones; with the
    // unready one at 0, 1200/3000 = 40 %, ceil(3 x 40/30) = 4 (not 6).
    let mut r = row(
        "an unready pod counts as nothing when scaling up on cpu",
        3,
        Target::Utilization(30),
        &[Some(300), Some(500), Some(700)],
        Ok((4, Some(60))),
    );
    r.pods[0].ready = Some((false, ago(3600)));
    rows.push(r);

    // Ready 10 s ago, within its first 5 minutes, its sample (15 s window) started
    // before it was ready: unready, and 1000/2000 with it at 0 is exactly 50 %.
    let mut r = row(
        "a sample from before readiness within the initialization period is not used",
        2,
        Target::Utilization(50),
        &[Some(1000), Some(1000)],
        Ok((2, Some(100))),
    );
    r.pods[1].start_time = Some(ago(60));
    r.pods[1].ready = Some((true, ago(10)));
    rows.push(r);

    // The same pod on memory: readiness does not matter, 200 % -> ceil(2 x 2) = 4.
    let mut r = row(
        "readiness is only considered for cpu",
        2,
        Target::Utilization(50),
        &[Some(1000), Some(1000)],
        Ok((4, Some(100))),
    );
    r.resource = "memory";
    r.pods[1].start_time = Some(ago(60));
    r.pods[1].ready = Some((true, ago(10)));
    rows.push(r);

    // Pending and deleted pods are ignored: 800/1000 = 80 % of one ready pod, ceil(1.6).
    let mut r = row(
        "pending and deleted pods are ignored",
        3,
        Target::Utilization(50),
        &[Some(800), None, Some(800)],
        Ok((2, Some(80))),
    );
    r.pods[1].phase = "Pending".into();
    r.pods[2].deleting = true;
    rows.push(r);

    let mut r = row(
        "a container without a request fails a utilization target",
        2,
        Target::Utilization(50),
        &[Some(100), Some(100)],
        Err("missing request for cpu in container app of Pod p1"),
    );
    r.pods[1].request = Err("app".into());
    rows.push(r);

    for r in rows {
        let got = calculate(r.current, r.target, r.resource, &r.pods, r.metrics, now())
            .map(|p| (p.replicas, p.utilization));
        assert_eq!(got, r.want.map_err(str::to_string), "{}", r.name);
    }
}
