//! The scheduler against the real in-process apiserver: ten Ready nodes with labels,
//! taints and small capacities; pods land exactly where kube-scheduler would put them,
//! and an unschedulable pod gets upstream's condition and FailedScheduling event.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use controllers::fixtures::{NodeFixture, PodFixture};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::ListParams;
use kube::Api;
use kybern_testkit::fixtures::{create_node, create_pod};
use kybern_testkit::{eventually_some, InProcess};
use scheduler::config::SchedulerConfig;
use scheduler::Scheduler;

const WAIT: Duration = Duration::from_secs(30);

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_pods_as_kube_scheduler_does_and_reports_unschedulable_ones() {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    let nodes = vec![
        Node::test("n1").label("disk", "ssd"),
        Node::test("n2").label("disk", "ssd"),
        Node::test("n3")
            .label("gpu", "true")
            .taint("dedicated", "gpu", "NoSchedule"),
        Node::test("n4").cpu("1").label("only", "here"),
        Node::test("n5").cpu("2").label("pool", "spread"),
        Node::test("n6").cpu("2").label("pool", "spread"),
        Node::test("n7").cpu("2").label("pool", "spread"),
        Node::test("n8").cpu("2").label("pool", "spread"),
        Node::test("n9").cpu("2").label("pool", "spread"),
        Node::test("n10").cpu("2").label("pool", "spread"),
    ];
    for n in &nodes {
        create_node(&client, n).await;
    }
    tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());

    let mut pods = vec![
        Pod::test("on-ssd").node_selector("disk", "ssd"),
        Pod::test("on-gpu").node_selector("gpu", "true").toleration(
            "dedicated",
            "Equal",
            "gpu",
            "NoSchedule",
        ),
        // 3 cpu fits only the 4-cpu nodes; n3's taint is not tolerated.
        Pod::test("big").requests("3", "1Gi"),
        // Each fits n4 alone: exactly one may land there.
        Pod::test("once-a")
            .requests("800m", "100Mi")
            .node_selector("only", "here"),
        Pod::test("once-b")
            .requests("800m", "100Mi")
            .node_selector("only", "here"),
    ];
    for i in 0..6 {
        pods.push(
            Pod::test(&format!("spread-{i}"))
                .label("app", "spread")
                .node_selector("pool", "spread")
                .anti_affinity_to("app", "spread", "kubernetes.io/hostname"),
        );
    }
    let mut other = Pod::test("other-scheduler");
    other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
    pods.push(other);
    for p in &pods {
        create_pod(&client, p).await;
    }

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Everything except one of the once-* pods and the foreign pod gets bound.
    let placed: BTreeMap<String, String> = eventually_some(WAIT, "10 pods bound", || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let bound: BTreeMap<String, String> = list
                .items
                .iter()
                .filter_map(|p| Some((p.metadata.name.clone()?, node_of(p)?)))
                .collect();
            (bound.len() >= 10).then_some(bound)
        }
    })
    .await;

    assert!(
        ["n1", "n2"].contains(&placed["on-ssd"].as_str()),
        "nodeSelector: {placed:?}"
    );
    assert_eq!(placed["on-gpu"], "n3", "toleration + selector");
    assert!(
        ["n1", "n2"].contains(&placed["big"].as_str()),
        "only 4-cpu untainted nodes fit 3 cpu: {placed:?}"
    );
    let spread: BTreeSet<&String> = (0..6).map(|i| &placed[&format!("spread-{i}")]).collect();
    let pool: BTreeSet<String> = (5..=10).map(|i| format!("n{i}")).collect();
    assert_eq!(
        spread,
        pool.iter().collect(),
        "anti-affinity puts one per node of the pool"
    );
    let once: Vec<&String> = ["once-a", "once-b"]
        .iter()
        .filter_map(|n| placed.get(*n))
        .collect();
    assert_eq!(
        once,
        vec!["n4"],
        "two pods that each fit only once never overcommit n4"
    );
    assert!(
        !placed.contains_key("other-scheduler"),
        "pods for another scheduler are ignored"
    );

    let loser = if placed.contains_key("once-a") {
        "once-b"
    } else {
        "once-a"
    };
    let want = "0/10 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, \
                8 node(s) didn't match Pod's node affinity/selector. preemption: 0/10 nodes are available: \
                1 No preemption victims found for incoming pod, 9 Preemption is not helpful for scheduling..";
    let condition = eventually_some(WAIT, "PodScheduled=False on the loser", || {
        let api = api.clone();
        async move {
            let p = api.get(loser).await.ok()?;
            p.status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        }
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(want));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually_some(WAIT, "FailedScheduling event", || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.involved_object.name.as_deref() == Some(loser)
                    && e.reason.as_deref() == Some("FailedScheduling")
            })
        }
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some(want));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));

    let foreign = api.get("other-scheduler").await.unwrap();
    assert_eq!(node_of(&foreign), None, "foreign pod untouched");
}

/// `pod` with priority `value` as the API admits one: through a PriorityClass of that
/// value (upstream's Priority admission refuses a bare `spec.priority`).
async fn prioritized(client: &kube::Client, mut pod: Pod, value: i32) -> Pod {
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    let name = format!("priority-{value}");
    let class = PriorityClass {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        value,
        ..Default::default()
    };
    Api::<PriorityClass>::all(client.clone())
        .create(&Default::default(), &class)
        .await
        .expect("creating the PriorityClass");
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.priority = None;
    spec.priority_class_name = Some(name);
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_the_lowest_priority_victim() {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    create_node(&client, &Node::test("n1").cpu("2")).await;
    tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());

    let low = prioritized(&client, Pod::test("low").requests("1", "1Gi"), 1).await;
    create_pod(&client, &low).await;
    let mid = prioritized(&client, Pod::test("mid").requests("1", "1Gi"), 5).await;
    create_pod(&client, &mid).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["low", "mid"] {
        eventually_some(WAIT, "low and mid bound", || {
            let api = api.clone();
            async move { node_of(&api.get(name).await.ok()?) }
        })
        .await;
    }

    let high = prioritized(&client, Pod::test("high").requests("1", "1Gi"), 10).await;
    create_pod(&client, &high).await;
    let nominated = eventually_some(WAIT, "nominatedNodeName on the preemptor", || {
        let api = api.clone();
        async move { api.get("high").await.ok()?.status?.nominated_node_name }
    })
    .await;
    assert_eq!(nominated, "n1");
    // The victim is deleted (gracefully: without a kubelet it may linger as terminating).
    eventually_some(WAIT, "low deleted", || {
        let api = api.clone();
        async move {
            match api.get_opt("low").await.ok()? {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
            }
        }
    })
    .await;
    let mid = api.get("mid").await.unwrap();
    assert!(
        mid.metadata.deletion_timestamp.is_none(),
        "the higher-priority pod is reprieved"
    );
    if api.get_opt("low").await.unwrap().is_none() {
        let node = eventually_some(WAIT, "the preemptor bound once the victim is gone", || {
            let api = api.clone();
            async move { node_of(&api.get("high").await.ok()?) }
        })
        .await;
        assert_eq!(node, "n1");
    }
}

/// `--scheduler-config` reaches the loop (`scheduler::LOOP`, what `kybern server`,
/// `kybern controller scheduler` and `kybern-scheduler` run) through the context's
/// settings: with a profile named `second-scheduler`, it binds that scheduler's pods,
/// which the default configuration never takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_schedules_with_the_configuration_its_context_carries() {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    create_node(&client, &Node::test("n1")).await;
    let config = SchedulerConfig {
        scheduler_name: "second-scheduler".into(),
        ..SchedulerConfig::default()
    };
    let ctx = controllers::Context::new(client.clone(), "test".into()).with_setting(Some(config));
    tokio::spawn((scheduler::LOOP.run)(std::sync::Arc::new(ctx)));

    let mut pod = Pod::test("for-the-second-scheduler");
    pod.spec
        .as_mut()
        .expect("fixture has a spec")
        .scheduler_name = Some("second-scheduler".into());
    create_pod(&client, &pod).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node = eventually_some(WAIT, "the second scheduler's pod bound", || {
        let api = api.clone();
        async move { node_of(&api.get("for-the-second-scheduler").await.ok()?) }
    })
    .await;
    assert_eq!(node, "n1");
}

/// Upstream's e2e ("events should be sent by kubelets and the scheduler") looks for this
/// event by `source=default-scheduler`; `kubectl describe pod` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bound_pod_gets_a_scheduled_event_from_the_default_scheduler() {
    let cluster = InProcess::start().await;
    let client = cluster.client.clone();
    create_node(&client, &Node::test("n1")).await;
    tokio::spawn(Scheduler::new(client.clone(), SchedulerConfig::default()).run());
    for name in ["first", "second"] {
        create_pod(&client, &Pod::test(name)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    for name in ["first", "second"] {
        let uid = pods.get(name).await.unwrap().metadata.uid;
        let selector = format!(
            "involvedObject.kind=Pod,involvedObject.name={name},source=default-scheduler,reason=Scheduled"
        );
        let event = eventually_some(WAIT, "Scheduled event", || {
            let (events, selector) = (events.clone(), selector.clone());
            async move {
                let list = events
                    .list(&ListParams::default().fields(&selector))
                    .await
                    .ok()?;
                list.items.into_iter().next()
            }
        })
        .await;
        assert_eq!(event.type_.as_deref(), Some("Normal"), "{name}");
        assert_eq!(
            event.message.as_deref(),
            Some(format!("Successfully assigned default/{name} to n1").as_str()),
            "{name}"
        );
        assert_eq!(event.involved_object.uid, uid, "{name}");
        assert_eq!(
            event.reporting_component.as_deref(),
            Some("default-scheduler"),
            "{name}"
        );
    }
}
