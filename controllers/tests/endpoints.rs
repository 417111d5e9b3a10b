//! The endpoints and endpointslice loops on simulated nodes: a Deployment's pods appear
//! in its Service's Endpoints and EndpointSlices with the ports they resolve, move
//! between ready and not ready with the pods, and services without a selector keep the
//! endpoints written by hand.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use kybern_testkit::fixtures::create_from as create;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

const LOOPS: &[&str] = &[
    "endpoints",
    "endpointslice",
    "scheduler",
    "replicaset",
    "deployment",
];

/// "ready IPs / not-ready IPs / name=port,..." of an Endpoints, subsets joined by " + ".
fn summary(ep: &Endpoints) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for s in ep.subsets.iter().flatten() {
        ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        ports.extend(
            s.ports
                .iter()
                .flatten()
                .map(|p| format!("{}={}", p.name.clone().unwrap_or_default(), p.port)),
        );
    }
    (ready, not_ready, ports)
}

async fn pod_ips(c: &Cluster, selector: &str) -> Result<BTreeSet<String>, String> {
    let pods = c
        .api::<Pod>()
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| e.to_string())?;
    Ok(pods
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect())
}

fn slice_ready(slices: &[EndpointSlice]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for e in slices.iter().flat_map(|s| s.endpoints.iter()) {
        let is_ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
        if is_ready { &mut ready } else { &mut not_ready }.extend(e.addresses.iter().cloned());
    }
    (ready, not_ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployments_pods_become_endpoints_with_named_ports_resolved() {
    let c = Cluster::start("endpoints-deploy", LOOPS, 2).await;
    create(
        &c.api::<Deployment>(),
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]},
                },
            },
        }),
    )
    .await;
    // One pod without the named port: it serves `metrics` only.
    create(
        &c.api::<Pod>(),
        json!({
            "metadata": {"name": "other", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }),
    )
    .await;
    create(
        &c.api::<Service>(),
        json!({
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9100, "targetPort": 9100},
            ]},
        }),
    )
    .await;

    eventually("4 ready addresses in the Endpoints", || async {
        let ips = pod_ips(&c, "app=web").await?;
        let ep = c
            .api::<Endpoints>()
            .get("web")
            .await
            .map_err(|e| e.to_string())?;
        let (ready, not_ready, ports) = summary(&ep);
        let other = c
            .api::<Pod>()
            .get("other")
            .await
            .map_err(|e| e.to_string())?
            .status
            .and_then(|s| s.pod_ip);
        let http_subset = ep
            .subsets
            .iter()
            .flatten()
            .find(|s| s.ports.iter().flatten().any(|p| p.port == 8080));
        let http_ips: BTreeSet<String> = http_subset
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .map(|a| a.ip.clone())
            .collect();
        let ok = ips.len() == 4
            && ready == ips
            && not_ready.is_empty()
            && ports == BTreeSet::from(["http=8080".to_string(), "metrics=9100".to_string()])
            && http_ips.len() == 3
            && other.as_ref().is_some_and(|o| !http_ips.contains(o));
        ok.then_some(())
            .ok_or(format!("pods {ips:?}, endpoints {:?}", ep.subsets))
    })
    .await;
    let ep = c.api::<Endpoints>().get("web").await.unwrap();
    assert_eq!(
        ep.labels().get("tier").map(String::as_str),
        Some("front"),
        "the service's labels are copied"
    );
    let addr = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next()
        .unwrap();
    assert!(
        addr.node_name
            .as_deref()
            .is_some_and(|n| n.starts_with("sim-")),
        "{addr:?}"
    );
    assert_eq!(
        addr.target_ref.as_ref().and_then(|r| r.kind.as_deref()),
        Some("Pod")
    );

    eventually("EndpointSlices with the same 4 ready endpoints", || async {
        let ips = pod_ips(&c, "app=web").await?;
        let slices = c
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .map_err(|e| e.to_string())?
            .items;
        let (ready, not_ready) = slice_ready(&slices);
        // Two port sets (with http and without), so two slices.
        (slices.len() == 2 && ready == ips && not_ready.is_empty())
            .then_some(())
            .ok_or(format!("{slices:?}"))
    })
    .await;
    let slices = c
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    for s in &slices {
        assert_eq!(
            s.labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("endpointslice-controller.k8s.io")
        );
        assert_eq!(s.address_type, "IPv4");
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("Service", "web", Some(true))
        );
    }

    // Nothing changes, so nothing is written: the resourceVersions stay.
    let ep_rv = c
        .api::<Endpoints>()
        .get("web")
        .await
        .unwrap()
        .resource_version();
    let slice_rvs: BTreeSet<_> = slices.iter().map(|s| s.resource_version()).collect();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        c.api::<Endpoints>()
            .get("web")
            .await
            .unwrap()
            .resource_version(),
        ep_rv,
        "endpoints rewritten without a change"
    );
    let again = c
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(
        again
            .iter()
            .map(|s| s.resource_version())
            .collect::<BTreeSet<_>>(),
        slice_rvs,
        "slices rewritten without a change"
    );

    // Deleting the Service deletes its Endpoints.
    c.api::<Service>()
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Endpoints of the deleted service gone", || async {
        match c
            .api::<Endpoints>()
            .get_opt("web")
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(ep) => Err(format!("{ep:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_changes_move_addresses_between_ready_and_not_ready() {
    let c = Cluster::start(
        "endpoints-ready",
        &["endpoints", "endpointslice", "scheduler"],
        1,
    )
    .await;
    for (name, ready) in [("a", "true"), ("b", "false")] {
        create(
            &c.api::<Pod>(),
            json!({
                "metadata": {"name": name, "labels": {"app": "db"}, "annotations": {"kybern.io/simulate-ready": ready}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }),
        )
        .await;
    }
    create(&c.api::<Service>(), json!({"metadata": {"name": "db"}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}})).await;
    let ip = |name: &'static str| {
        let api = c.api::<Pod>();
        async move { api.get(name).await.ok().and_then(|p| p.status?.pod_ip) }
    };
    let expect = |ready: Vec<&'static str>, not_ready: Vec<&'static str>| {
        let c = &c;
        async move {
            let mut want_ready = BTreeSet::new();
            for n in &ready {
                want_ready.insert(ip(n).await.ok_or(format!("{n} has no IP yet"))?);
            }
            let mut want_not = BTreeSet::new();
            for n in &not_ready {
                want_not.insert(ip(n).await.ok_or(format!("{n} has no IP yet"))?);
            }
            let ep = c
                .api::<Endpoints>()
                .get("db")
                .await
                .map_err(|e| e.to_string())?;
            let (r, nr, _) = summary(&ep);
            let slices = c
                .api::<EndpointSlice>()
                .list(&ListParams::default().labels("kubernetes.io/service-name=db"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            let (sr, snr) = slice_ready(&slices);
            (r == want_ready && nr == want_not && sr == want_ready && snr == want_not)
                .then_some(())
                .ok_or(format!("endpoints {r:?}/{nr:?}, slices {sr:?}/{snr:?}"))
        }
    };
    eventually("a ready, b not ready", || expect(vec!["a"], vec!["b"])).await;

    // The pod turns unready (its status says so), then ready again.
    let set_ready = |name: &'static str, status: &'static str| {
        let api = c.api::<Pod>();
        async move {
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": status}]}});
            api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .unwrap();
        }
    };
    c.api::<Pod>()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kybern.io/simulate-ready": "false"}}}),
            ),
        )
        .await
        .unwrap();
    set_ready("a", "False").await;
    eventually("both not ready", || expect(vec![], vec!["a", "b"])).await;
    c.api::<Pod>()
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kybern.io/simulate-ready": "true"}}}),
            ),
        )
        .await
        .unwrap();
    set_ready("b", "True").await;
    eventually("b ready, a not ready", || expect(vec!["b"], vec!["a"])).await;

    // A pod whose labels stop matching leaves.
    c.api::<Pod>()
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
        )
        .await
        .unwrap();
    eventually("only b", || expect(vec!["b"], vec![])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_a_selector_keep_their_hand_written_endpoints() {
    let c = Cluster::start("endpoints-manual", &["endpoints", "endpointslice"], 0).await;
    create(
        &c.api::<Service>(),
        json!({"metadata": {"name": "external"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let manual = json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}],
    });
    create(&c.api::<Endpoints>(), manual).await;
    // A service with a selector alongside, so the loops are seen working meanwhile.
    create(&c.api::<Service>(), json!({"metadata": {"name": "selected"}, "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}})).await;
    eventually(
        "the selected service's endpoints and placeholder slice",
        || async {
            let ep = c
                .api::<Endpoints>()
                .get_opt("selected")
                .await
                .map_err(|e| e.to_string())?;
            let slices = c
                .api::<EndpointSlice>()
                .list(&ListParams::default().labels("kubernetes.io/service-name=selected"))
                .await
                .map_err(|e| e.to_string())?
                .items;
            (ep.is_some() && slices.len() == 1 && slices[0].endpoints.is_empty())
                .then_some(())
                .ok_or(format!("{ep:?} {slices:?}"))
        },
    )
    .await;
    let ep = c.api::<Endpoints>().get("external").await.unwrap();
    let (ready, _, _) = summary(&ep);
    assert_eq!(ready, BTreeSet::from(["192.0.2.10".to_string()]));
    let slices = c
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels("kubernetes.io/service-name=external"))
        .await
        .unwrap()
        .items;
    assert!(
        slices.is_empty(),
        "no slices for a service without selector: {slices:?}"
    );

    // The apiserver's own `kubernetes` service is left as the apiserver wrote it.
    let default_ep: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    let k = default_ep.get("kubernetes").await.unwrap();
    assert_eq!(summary(&k).0.len(), 1, "{k:?}");
    let default_slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let ks = default_slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
        .await
        .unwrap()
        .items;
    assert_eq!(ks.len(), 1);
    assert_eq!(
        ks[0]
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("kybern-apiserver")
    );
}
