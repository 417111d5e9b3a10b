use super::*;
use serde_json::json;

fn endpoints(subsets: serde_json::Value) -> Endpoints {
    serde_json::from_value(json!({
        "metadata": {
            "name": "ext", "namespace": "ns", "uid": "ep-uid",
            "labels": {"team": "a"},
            "annotations": {
                "note": "kept",
                "endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z",
            },
        },
        "subsets": subsets,
    }))
    .unwrap()
}

/// Each slice as "type ports: ip(ready) ip(not) ...", sorted.
fn summary(d: &Desired) -> Vec<String> {
    d.slices
        .iter()
        .map(|((t, _), (ports, eps))| {
            let ports: Vec<String> = ports
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or(0)
                    )
                })
                .collect();
            let eps: Vec<String> = eps
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
            format!("{t} [{}]: {}", ports.join(","), eps.join(" "))
        })
        .collect()
}

#[test]
fn endpoints_subsets_become_one_slice_per_distinct_port_set() {
    let cases = [
        (
            "ready and not-ready addresses",
            json!([{"addresses": [{"ip": "10.0.0.2"}], "notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]),
            vec!["IPv4 [=80]: 10.0.0.1(not) 10.0.0.2(ready)"],
        ),
        (
            "two subsets with the same ports share a slice",
            json!([
                {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]},
                {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "b", "port": 81}, {"name": "a", "port": 80}]},
            ]),
            vec!["IPv4 [a=80,b=81]: 10.0.0.1(ready) 10.0.0.2(ready)"],
        ),
        (
            "different ports give different slices",
            json!([
                {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 90}]},
            ]),
            vec!["IPv4 [=80]: 10.0.0.1(ready)", "IPv4 [=90]: 10.0.0.2(ready)"],
        ),
        (
            "an address ready anywhere for a port is ready",
            json!([
                {"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
            ]),
            vec!["IPv4 [=80]: 10.0.0.1(ready)"],
        ),
        (
            "IPv6 addresses get their own slice, written canonically",
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00:0:0::1"}], "ports": [{"port": 80}]}]),
            vec!["IPv4 [=80]: 10.0.0.1(ready)", "IPv6 [=80]: fd00::1(ready)"],
        ),
        (
            "addresses that are not IPs are skipped",
            json!([{"addresses": [{"ip": "not-an-ip"}, {"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]),
            vec!["IPv4 [=80]: 10.0.0.1(ready)"],
        ),
        ("no subsets, no slices", json!([]), vec![]),
    ];
    for (name, subsets, want) in cases {
        assert_eq!(summary(&desired(&endpoints(subsets), 1000)), want, "{name}");
    }
}

#[test]
fn at_most_the_maximum_of_addresses_is_mirrored_per_subset_ready_ones_first() {
    let ready: Vec<_> = (1..=4)
        .map(|i| json!({"ip": format!("10.0.0.{i}")}))
        .collect();
    let not_ready: Vec<_> = (1..=3)
        .map(|i| json!({"ip": format!("10.0.1.{i}")}))
        .collect();
    let ep = endpoints(
        json!([{"addresses": ready, "notReadyAddresses": not_ready, "ports": [{"port": 80}]}]),
    );
    let d = desired(&ep, 5);
    assert_eq!(
        summary(&d),
        ["IPv4 [=80]: 10.0.0.1(ready) 10.0.0.2(ready) 10.0.0.3(ready) 10.0.0.4(ready) 10.0.1.1(not)"]
    );
    assert_eq!((d.skipped, d.invalid), (2, 0));
}

#[test]
fn mirrored_slices_carry_the_endpoints_labels_annotations_and_owner() {
    let ep = endpoints(
        json!([{"addresses": [{"ip": "10.0.0.1", "nodeName": "n1", "hostname": "h"}], "ports": [{"name": "http", "port": 80, "appProtocol": "http"}]}]),
    );
    let p = plan(&ep, &[], desired(&ep, 1000));
    assert_eq!(p.create.len(), 1);
    let s = &p.create[0];
    assert_eq!(s.metadata.generate_name.as_deref(), Some("ext-"));
    let labels = s.labels();
    assert_eq!(labels["team"], "a");
    assert_eq!(labels[SERVICE_NAME_LABEL], "ext");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    let annotations = s.annotations();
    assert_eq!(annotations.get("note").map(String::as_str), Some("kept"));
    assert!(!annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    let owner = &s.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Endpoints", "ep-uid", Some(true))
    );
    let e = &s.endpoints[0];
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    assert_eq!(e.hostname.as_deref(), Some("h"));
    let c = e.conditions.as_ref().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(true), None, None)
    );
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(port.app_protocol.as_deref(), Some("http"));
}

/// `plan`'s creations named as the apiserver would name them.
fn stored(p: Plan) -> Vec<EndpointSlice> {
    p.create
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.metadata.name = Some(format!("ext-{i}"));
            s.metadata.generate_name = None;
            s
        })
        .collect()
}

#[test]
fn existing_mirrored_slices_are_kept_rewritten_reused_or_deleted() {
    let one = json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]);
    let before = endpoints(one.clone());
    let existing = stored(plan(&before, &[], desired(&before, 1000)));
    // (name, new subsets, (creates, updates, deletes))
    let cases = [
        ("nothing changed: no writes", one, (0, 0, 0)),
        (
            "an address added: the slice is rewritten",
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]),
            (0, 1, 0),
        ),
        (
            "the port changed: the old slice is reused under its name",
            json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 81}]}]),
            (0, 1, 0),
        ),
        (
            "every address gone: the slice is deleted",
            json!([]),
            (0, 0, 1),
        ),
        (
            "a second port set: one slice more",
            json!([
                {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 90}]},
            ]),
            (1, 0, 0),
        ),
    ];
    for (name, subsets, want) in cases {
        let ep = endpoints(subsets);
        let p = plan(&ep, &existing, desired(&ep, 1000));
        assert_eq!(
            (p.create.len(), p.update.len(), p.delete.len()),
            want,
            "{name}"
        );
        for u in &p.update {
            assert_eq!(u.metadata.name.as_deref(), Some("ext-0"), "{name}");
        }
    }
}

#[test]
fn endpoints_labelled_skip_mirror_or_used_as_locks_are_not_mirrored() {
    let cases = [
        ("plain", json!({}), json!({}), true),
        (
            "skip-mirror true",
            json!({SKIP_MIRROR_LABEL: "true"}),
            json!({}),
            false,
        ),
        (
            "skip-mirror false",
            json!({SKIP_MIRROR_LABEL: "false"}),
            json!({}),
            true,
        ),
        (
            "leader lock",
            json!({}),
            json!({LEADER_ANNOTATION: "{}"}),
            false,
        ),
    ];
    for (name, labels, annotations, want) in cases {
        let ep: Endpoints = serde_json::from_value(
            json!({"metadata": {"name": "e", "labels": labels, "annotations": annotations}}),
        )
        .unwrap();
        assert_eq!(should_mirror(&ep), want, "{name}");
    }
}
