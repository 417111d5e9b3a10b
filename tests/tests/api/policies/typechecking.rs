//! A policy's `status.typeChecking`, as upstream's status controller writes it: an
//! expression that selects a field the matched kind's schema lacks gets a warning
//! (the policy still works as written), a correct one none; `observedGeneration`
//! follows the spec.

use serde_json::{json, Value};

use super::replica_policy;
use crate::common::Cluster;
use crate::podsecurity::{kubectl_with, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_selects_an_undeclared_field_gets_upstreams_type_checking_warning() {
    let c = Cluster::builder("vap-typecheck").start().await;
    let policy = replica_policy(json!({
        "validations": [
            {"expression": "object.spec.replicas <= 5"},
            {"expression": "object.spec.replicass <= 5"}
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
        }]})
    );

    let fixed = replica_policy(json!({}));
    let out = kubectl_with(&c, &["apply", "-f", "-"], &fixed);
    assert!(out.status.success(), "kubectl apply: {:?}", text(&out));
    let s = crate::common::eventually("the type checking of generation 2", || status(2)).await;
    assert_eq!(s["typeChecking"], json!({}), "{s}");
}
