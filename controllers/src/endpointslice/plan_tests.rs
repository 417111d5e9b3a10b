use super::*;
use crate::shared::endpoint_pods::fixtures::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn ready_pods(n: usize) -> Vec<Pod> {
    (0..n)
        .map(|i| {
            pod(&format!("p{i:03}"))
                .ip(&format!("10.42.{}.{}", i / 200, i % 200 + 1))
                .ready()
                .port("http", 8080)
        })
        .collect()
}

fn web() -> Service {
    service("web").ports(vec![svc_port(
        "http",
        80,
        IntOrString::String("http".into()),
    )])
}

/// The slices a plan creates, as the apiserver would store them (named).
fn created(plan: Plan) -> Vec<EndpointSlice> {
    plan.create
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.metadata.name = Some(format!("web-{i}"));
            s
        })
        .collect()
}

fn plan_for(existing: &[EndpointSlice], pods: &[Pod]) -> Plan {
    let pods: Vec<&Pod> = pods.iter().collect();
    plan(
        &web(),
        existing,
        desired_groups(&web(), &pods),
        MAX_ENDPOINTS_PER_SLICE,
    )
}

fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
    slices.iter().map(|s| s.endpoints.len()).collect()
}

#[test]
fn slices_hold_at_most_a_hundred_endpoints() {
    let cases = [
        ("1 pod", 1, vec![1]),
        ("100 pods", 100, vec![100]),
        ("101 pods", 101, vec![100, 1]),
        ("250 pods", 250, vec![100, 100, 50]),
    ];
    for (name, n, want) in cases {
        let plan = plan_for(&[], &ready_pods(n));
        assert!(plan.update.is_empty() && plan.delete.is_empty(), "{name}");
        assert_eq!(sizes(&plan.create), want, "{name}");
        for s in &plan.create {
            let labels = s.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[SERVICE_NAME_LABEL], "web", "{name}");
            assert_eq!(
                labels[MANAGED_BY_LABEL], "endpointslice-controller.k8s.io",
                "{name}"
            );
            assert_eq!(
                s.metadata.owner_references.as_ref().unwrap()[0].kind,
                "Service",
                "{name}"
            );
            assert_eq!(s.address_type, "IPv4", "{name}");
            assert_eq!(s.ports.as_ref().unwrap()[0].port, Some(8080), "{name}");
        }
    }
}

#[test]
fn existing_slices_change_only_where_endpoints_changed() {
    let pods = ready_pods(150);
    let existing = created(plan_for(&[], &pods));
    assert_eq!(sizes(&existing), vec![100, 50]);

    let same = plan_for(&existing, &pods);
    assert!(
        same.create.is_empty() && same.update.is_empty() && same.delete.is_empty(),
        "nothing changed: {same:?}"
    );

    let mut fewer = pods.clone();
    fewer.remove(10);
    let p = plan_for(&existing, &fewer);
    assert_eq!(
        (p.create.len(), p.update.len(), p.delete.len()),
        (0, 1, 0),
        "a pod left"
    );
    assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-0"));
    assert_eq!(p.update[0].endpoints.len(), 99);

    let more = ready_pods(170);
    let p = plan_for(&existing, &more);
    assert_eq!(
        (p.create.len(), p.update.len(), p.delete.len()),
        (0, 1, 0),
        "new pods fill the slice with room"
    );
    assert_eq!(sizes(&p.update), vec![70]);

    let mut unready = pods.clone();
    unready[120] = pod("p120").ip("10.42.0.121").port("http", 8080);
    let p = plan_for(&existing, &unready);
    assert_eq!(p.update.len(), 1, "a readiness change rewrites its slice");
    assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-1"));
}

#[test]
fn pods_resolving_named_ports_differently_go_to_different_slices() {
    let pods = [
        pod("a").ip("10.42.0.1").ready().port("http", 8080),
        pod("b").ip("10.42.0.2").ready().port("http", 9090),
        pod("c").ip("10.42.0.3").ready(),
    ];
    let plan = plan_for(&[], &pods);
    let mut ports: Vec<Vec<Option<i32>>> = plan
        .create
        .iter()
        .map(|s| s.ports.iter().flatten().map(|p| p.port).collect())
        .collect();
    ports.sort();
    // The pod without a port named http has no ports in this service's slices.
    assert_eq!(ports, vec![vec![], vec![Some(8080)], vec![Some(9090)]]);
}

#[test]
fn a_service_without_endpoints_keeps_one_empty_placeholder_slice() {
    let plan = plan_for(&[], &[]);
    assert_eq!(sizes(&plan.create), vec![0]);
    let existing = created(plan_for(&[], &ready_pods(150)));
    let p = plan_for(&existing, &[]);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 1));
    assert!(
        p.update[0].endpoints.is_empty() && p.update[0].ports.as_ref().is_some_and(Vec::is_empty)
    );
    let placeholder = created(plan_for(&[], &[]));
    let again = plan_for(&placeholder, &[]);
    assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
}

#[test]
fn endpoint_conditions_follow_readiness_and_termination() {
    let cases = [
        ("ready", web(), pod("a").ready(), (true, true, false)),
        ("not ready", web(), pod("a"), (false, false, false)),
        (
            "ready but terminating",
            web(),
            pod("a").ready().terminating(),
            (false, true, true),
        ),
        (
            "not ready, published anyway",
            web().publish_not_ready(),
            pod("a"),
            (true, true, false),
        ),
        (
            "terminating, published anyway",
            web().publish_not_ready(),
            pod("a").terminating(),
            (true, true, true),
        ),
    ];
    for (name, svc, pod, (ready, serving, terminating)) in cases {
        let pod = pod.ip("10.42.0.1").port("http", 8080).on_node("sim-0");
        let groups = desired_groups(&svc, &[&pod]);
        let e = groups
            .values()
            .next()
            .and_then(|g| g.endpoints.values().next())
            .unwrap_or_else(|| panic!("{name}: no endpoint"));
        let c = e.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(ready), Some(serving), Some(terminating)),
            "{name}"
        );
        assert_eq!(e.node_name.as_deref(), Some("sim-0"), "{name}");
        assert_eq!(
            e.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("a"),
            "{name}"
        );
    }
}
