//! A policy's `status.typeChecking`, as upstream's status controller writes it: an
//! expression that selects a field the matched kind's schema lacks, or compares values
//! of types CEL cannot compare (upstream's conformance cases), gets a warning (the
//! policy still works as written), a correct one none; `observedGeneration` follows the
//! spec.

use serde_json::{json, Value};

use super::replica_policy;
use crate::common::Cluster;
use crate::podsecurity::{kubectl_with, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_undeclared_fields_or_confused_types_gets_upstreams_type_checking_warnings() {
    let c = Cluster::builder("vap-typecheck").start().await;
    let policy = replica_policy(json!({
        "validations": [
            {"expression": "object.spec.replicas <= 5"},
            {"expression": "object.spec.replicass <= 5"},
            {"expression": "object.spec.replicas > '1'"},
            {"expression": "object.spec.template.metadata.labels.app > 1"}
        ]
    }));
    let out = kubectl_with(&c, &["apply", "-f", "-"], &policy);
    assert!(out.status.success(), "kubectl apply: {:?}", text(&out));

    let status = |generation: i64| {
        let c = &c;
        async move {
            let out = c.kubectl_output(&[
                "get",
                "validatingadmissionpolicy",
                "demo-policy.example.com",
                "-o",
                "json",
            ]);
            let policy: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            match policy["status"]["observedGeneration"].as_i64() {
                Some(g) if g == generation => Ok(policy["status"].clone()),
                _ => Err(policy["status"].to_string()),
            }
        }
    };
    let s = crate::common::eventually("the type checking of generation 1", || status(1)).await;
    assert_eq!(
        s["typeChecking"],
        json!({"expressionWarnings": [{
            "fieldRef": "spec.validations[1].expression",
            "warning": "apps/v1, Kind=Deployment: ERROR: <input>:1:12: undefined field 'replicass'\n | object.spec.replicass <= 5\n | ...........^\n"
        }, {
            "fieldRef": "spec.validations[2].expression",
            "warning": "apps/v1, Kind=Deployment: ERROR: <input>:1:22: found no matching overload for '_>_' applied to '(int, string)'\n | object.spec.replicas > '1'\n | .....................^\n"
        }, {
            "fieldRef": "spec.validations[3].expression",
            "warning": "apps/v1, Kind=Deployment: ERROR: <input>:1:42: found no matching overload for '_>_' applied to '(string, int)'\n | object.spec.template.metadata.labels.app > 1\n | .........................................^\n"
        }]})
    );

    let fixed = replica_policy(json!({}));
    let out = kubectl_with(&c, &["apply", "-f", "-"], &fixed);
    assert!(out.status.success(), "kubectl apply: {:?}", text(&out));
    let s = crate::common::eventually("the type checking of generation 2", || status(2)).await;
    assert_eq!(s["typeChecking"], json!({}), "{s}");
}
