//! The endpointslicemirroring loop in-process: the Endpoints of a Service without a
//! selector appear as EndpointSlices managed by the mirroring controller, follow the
//! Endpoints as it changes, and go when it goes, the Service gets a selector, or the
//! Endpoints asks not to be mirrored.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use kybern_testkit::fixtures::create_from as create;
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

const MIRRORED: &str =
    "endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io";

async fn mirrored(c: &Cluster, service: &str) -> Result<Vec<EndpointSlice>, String> {
    let selector = format!("{MIRRORED},kubernetes.io/service-name={service}");
    Ok(c.api::<EndpointSlice>()
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| e.to_string())?
        .items)
}

/// Each slice as "port,...: ip(ready|not) ...", sorted.
fn summary(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .map(|s| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .flatten()
                .map(|p| p.port.unwrap_or(0).to_string())
                .collect();
            let eps: Vec<String> = s
                .endpoints
                .iter()
                .map(|e| {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                    format!(
                        "{}({})",
                        e.addresses[0],
                        if ready { "ready" } else { "not" }
                    )
                })
                .collect();
            format!("{}: {}", ports.join(","), eps.join(" "))
        })
        .collect()
}

async fn wait_for(c: &Cluster, service: &str, want: &[&str]) -> Vec<EndpointSlice> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(
        &format!("{service}'s mirrored slices to be {want:?}"),
        || async {
            let slices = mirrored(c, service).await?;
            (summary(&slices) == want)
                .then_some(slices.clone())
                .ok_or(format!("{:?}", summary(&slices)))
        },
    )
    .await
}

fn endpoints(name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": labels},
        "subsets": [{
            "addresses": [{"ip": "192.0.2.10"}],
            "notReadyAddresses": [{"ip": "192.0.2.11"}],
            "ports": [{"port": 80}],
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_endpoints_of_selectorless_services_are_mirrored() {
    let c = Cluster::start("mirror-which", &["endpointslicemirroring"], 0).await;
    let selectorless = json!({"ports": [{"port": 80}]});
    let selected = json!({"selector": {"app": "x"}, "ports": [{"port": 80}]});
    // (name, the service's spec if there is one, the Endpoints' labels, mirrored)
    let cases = [
        ("plain", Some(selectorless.clone()), json!({}), true),
        ("selected", Some(selected), json!({}), false),
        ("no-service", None, json!({}), false),
        (
            "skipped",
            Some(selectorless.clone()),
            json!({"endpointslice.kubernetes.io/skip-mirror": "true"}),
            false,
        ),
    ];
    for (name, spec, labels, _) in &cases {
        if let Some(spec) = spec {
            create(
                &c.api::<Service>(),
                json!({"metadata": {"name": name}, "spec": spec}),
            )
            .await;
        }
        create(&c.api::<Endpoints>(), endpoints(name, labels.clone())).await;
    }
    // Created last, so once it is mirrored the loop has seen every row.
    create(
        &c.api::<Service>(),
        json!({"metadata": {"name": "sentinel"}, "spec": selectorless}),
    )
    .await;
    create(&c.api::<Endpoints>(), endpoints("sentinel", json!({}))).await;
    wait_for(&c, "sentinel", &["80: 192.0.2.10(ready) 192.0.2.11(not)"]).await;
    for (name, _, _, want) in cases {
        let want: &[&str] = if want {
            &["80: 192.0.2.10(ready) 192.0.2.11(not)"]
        } else {
            &[]
        };
        wait_for(&c, name, want).await;
        if !want.is_empty() {
            continue;
        }
        let all = c
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
            .await
            .unwrap()
            .items;
        assert!(all.is_empty(), "{name}: {all:?}");
    }
    // The apiserver's own `kubernetes` Endpoints carries skip-mirror.
    let default: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let ours = default
        .list(&ListParams::default().labels(MIRRORED))
        .await
        .unwrap()
        .items;
    assert!(ours.is_empty(), "{ours:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_slices_follow_their_endpoints_and_go_with_it() {
    let c = Cluster::start("mirror-follow", &["endpointslicemirroring"], 0).await;
    for name in ["ext", "db"] {
        create(
            &c.api::<Service>(),
            json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
        create(&c.api::<Endpoints>(), endpoints(name, json!({"team": "a"}))).await;
    }
    let first = wait_for(&c, "ext", &["80: 192.0.2.10(ready) 192.0.2.11(not)"]).await;
    let slice = &first[0];
    assert!(slice.name_any().starts_with("ext-"), "{}", slice.name_any());
    assert_eq!(slice.labels()["team"], "a");
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Endpoints", "ext")
    );

    // A new address and a second port set: the slice is rewritten, one is added.
    let changed = json!({"subsets": [
        {"addresses": [{"ip": "192.0.2.10"}, {"ip": "192.0.2.12"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "192.0.2.20"}], "ports": [{"port": 443}]},
    ]});
    c.api::<Endpoints>()
        .patch("ext", &PatchParams::default(), &Patch::Merge(&changed))
        .await
        .unwrap();
    let after = wait_for(
        &c,
        "ext",
        &[
            "80: 192.0.2.10(ready) 192.0.2.12(ready)",
            "443: 192.0.2.20(ready)",
        ],
    )
    .await;
    assert!(
        after.iter().any(|s| s.name_any() == slice.name_any()),
        "the first slice is kept under its name: {after:?}"
    );

    // The Endpoints goes: so do its slices.
    c.api::<Endpoints>()
        .delete("ext", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&c, "ext", &[]).await;

    // The Service gets a selector: its Endpoints is no longer mirrored.
    wait_for(&c, "db", &["80: 192.0.2.10(ready) 192.0.2.11(not)"]).await;
    let selector = json!({"spec": {"selector": {"app": "db"}}});
    c.api::<Service>()
        .patch("db", &PatchParams::default(), &Patch::Merge(&selector))
        .await
        .unwrap();
    wait_for(&c, "db", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_thousand_addresses_are_mirrored_with_a_warning_event() {
    let c = Cluster::start("mirror-cap", &["endpointslicemirroring"], 0).await;
    create(
        &c.api::<Service>(),
        json!({"metadata": {"name": "big"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    let addresses: Vec<_> = (0..1005)
        .map(|i| json!({"ip": format!("10.1.{}.{}", i / 250, i % 250 + 1)}))
        .collect();
    create(
        &c.api::<Endpoints>(),
        json!({"metadata": {"name": "big"}, "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]}),
    )
    .await;
    eventually("1000 mirrored endpoints", || async {
        let slices = mirrored(&c, "big").await?;
        let n: usize = slices.iter().map(|s| s.endpoints.len()).sum();
        (slices.len() == 1 && n == 1000)
            .then_some(())
            .ok_or(format!("{} slices, {n} endpoints", slices.len()))
    })
    .await;
    let event = eventually("a TooManyAddressesToMirror event", || async {
        let events = c
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        events
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TooManyAddressesToMirror"))
            .ok_or("none yet".to_string())
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Endpoints"));
    assert_eq!(
        event.message.as_deref(),
        Some("A max of 1000 addresses can be mirrored to EndpointSlices per Endpoints subset. 5 addresses were skipped")
    );
}
