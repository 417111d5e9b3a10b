//! Audit annotations as an operator sees them: kybern has no audit log, so a policy's
//! `auditAnnotations` and an Audit binding's validation failures are written to the
//! server's log on target `audit` (as PodSecurity's audit verdicts are), here the log
//! of a real `kybern server` run with `KYBERN_LOG=warn,audit=info`.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{kybern_binary, Binary};
use crate::podsecurity::text;

/// `kubectl apply -f` of `manifest` against `server`.
fn apply(server: &Binary, manifest: &Value) -> std::process::Output {
    let file = server.data_dir.join("manifest.json");
    std::fs::write(&file, manifest.to_string()).unwrap();
    server
        .kubectl()
        .output(&["apply", "-f", file.to_str().unwrap()])
}

fn server_log(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default()
}

#[tokio::test]
async fn audit_annotations_and_audited_failures_reach_the_servers_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut cmd = Command::new(kybern_binary());
    cmd.args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("KYBERN_LOG", "warn,audit=info")
        .env("NO_COLOR", "1");
    let server = Binary::spawn(cmd, &data_dir);

    let mut policy = super::replica_policy(json!({
        "auditAnnotations": [
            {"key": "replicas", "valueExpression": "'asked for ' + string(object.spec.replicas)"},
            {"key": "paused", "valueExpression": "has(object.spec.paused) ? 'paused' : null"}
        ]
    }));
    policy["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "demo-binding-test.example.com"},
        "spec": {"policyName": "demo-policy.example.com", "validationActions": ["Audit"]}
    });
    for manifest in [&policy, &binding] {
        let out = apply(&server, manifest);
        assert!(out.status.success(), "kubectl apply: {:?}", text(&out));
    }

    let kubectl = server.kubectl();
    let expected = [
        "demo-policy.example.com/replicas: asked for 6",
        r#"validation.policy.admission.k8s.io/validation_failure: [{"message":"failed expression: object.spec.replicas <= 5","policy":"demo-policy.example.com","binding":"demo-binding-test.example.com","expressionIndex":0,"validationActions":["Audit"]}]"#,
    ];
    // The policy applies once the server's cache has it: create until the log shows it.
    let log = crate::common::eventually("the audit annotations in the log", || async {
        let name = format!("web-{}", std::process::id());
        let _ = kubectl.output(&["delete", "deployment", &name, "--ignore-not-found"]);
        let out = kubectl.output(&[
            "create",
            "deployment",
            &name,
            "--image=nginx",
            "--replicas=6",
        ]);
        assert!(out.status.success(), "Audit alone admits: {:?}", text(&out));
        let log = server_log(&data_dir);
        if expected.iter().all(|e| log.contains(e)) {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await;
    assert!(
        !log.contains("demo-policy.example.com/paused"),
        "a null value is no annotation: {log}"
    );

    let mut bad = policy.clone();
    bad["spec"]["auditAnnotations"] = json!([{"key": "a/b", "valueExpression": "'x'"}]);
    let out = apply(&server, &bad);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "a key with a slash is refused");
    assert!(
        stderr.contains(
            r#"spec.auditAnnotations[0].key: Invalid value: "demo-policy.example.com/a/b""#
        ),
        "{stderr}"
    );
}
