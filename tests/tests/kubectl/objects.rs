//! kubectl's everyday verbs on objects, and what it learns from discovery.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Backend, ChildGuard};
use crate::{header, path_str, row, Cluster, DEPLOYMENT_YAML};

#[tokio::test]
async fn kubectl_creates_from_yaml_and_json_files_and_gets_them_in_every_format() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let yaml = c.manifest("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  labels: {tier: front}\ndata:\n  a: \"1\"\n  b: \"2\"\n");
    let json = c.manifest(
        "cm.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-json", "labels": {"tier": "back"}}, "data": {"c": "3"}}"#,
    );
    assert_eq!(
        k.run(&["create", "-f", path_str(&yaml)]).trim(),
        "configmap/from-yaml created"
    );
    assert_eq!(
        k.run(&["create", "-f", path_str(&json)]).trim(),
        "configmap/from-json created"
    );

    let table = k.run(&["get", "configmaps"]);
    assert_eq!(header(&table), ["NAME", "DATA", "AGE"], "{table}");
    assert_eq!(row(&table, "from-yaml")[1], "2");
    assert_eq!(row(&table, "from-json")[1], "1");

    let as_yaml = k.run(&["get", "configmap", "from-yaml", "-o", "yaml"]);
    assert!(
        as_yaml.contains("name: from-yaml")
            && as_yaml.contains("a: \"1\"")
            && as_yaml.contains("uid: "),
        "{as_yaml}"
    );

    let as_json: Value =
        serde_json::from_str(&k.run(&["get", "configmap", "from-json", "-o", "json"])).unwrap();
    assert_eq!(as_json["data"]["c"], "3");
    assert_eq!(as_json["kind"], "ConfigMap");

    let labelled = k.run(&["get", "configmaps", "-l", "tier=front", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/from-yaml");
    let by_field = k.run(&[
        "get",
        "configmaps",
        "--field-selector",
        "metadata.name=from-json",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "configmap/from-json");

    let again = k.output(&["create", "-f", path_str(&yaml)]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("configmaps \"from-yaml\" already exists"),
        "{stderr}"
    );
}

#[tokio::test]
async fn kubectl_prints_pods_with_upstreams_columns() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let pod = c.manifest(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: lonely}\nspec:\n  containers:\n  - {name: main, image: busybox}\n",
    );
    k.run(&["create", "-f", path_str(&pod)]);
    let table = k.run(&["get", "pods"]);
    assert_eq!(
        header(&table),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert_eq!(
        row(&table, "lonely")[1..4],
        ["0/1", "Pending", "0"],
        "{table}"
    );
}

#[tokio::test]
async fn kubectl_labels_annotates_patches_and_scales() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    k.run(&[
        "create",
        "-f",
        path_str(&c.manifest("d.yaml", DEPLOYMENT_YAML)),
    ]);
    let cm = c.manifest(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: \"1\"}\n",
    );
    k.run(&["create", "-f", path_str(&cm)]);

    assert_eq!(
        k.run(&["label", "configmap", "conf", "env=prod"]).trim(),
        "configmap/conf labeled"
    );
    assert_eq!(
        k.run(&["annotate", "configmap", "conf", "note=hello"])
            .trim(),
        "configmap/conf annotated"
    );
    assert_eq!(
        k.run(&[
            "patch",
            "configmap",
            "conf",
            "--type=merge",
            "-p",
            r#"{"data":{"b":"2"}}"#
        ])
        .trim(),
        "configmap/conf patched"
    );
    let ops = r#"[{"op":"replace","path":"/data/a","value":"10"}]"#;
    assert_eq!(
        k.run(&["patch", "configmap", "conf", "--type=json", "-p", ops])
            .trim(),
        "configmap/conf patched"
    );
    let conf: Value =
        serde_json::from_str(&k.run(&["get", "configmap", "conf", "-o", "json"])).unwrap();
    assert_eq!(conf["metadata"]["labels"]["env"], "prod");
    assert_eq!(conf["metadata"]["annotations"]["note"], "hello");
    assert_eq!(
        (conf["data"]["a"].as_str(), conf["data"]["b"].as_str()),
        (Some("10"), Some("2"))
    );

    let failing =
        r#"[{"op":"test","path":"/data/a","value":"nope"},{"op":"remove","path":"/data/a"}]"#;
    let out = k.output(&["patch", "configmap", "conf", "--type=json", "-p", failing]);
    assert!(
        !out.status.success(),
        "a failing test op must fail the patch"
    );
    assert_eq!(
        k.run(&["get", "configmap", "conf", "-o", "jsonpath={.data.a}"]),
        "10"
    );

    assert_eq!(
        k.run(&["scale", "deployment", "web", "--replicas=3"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        k.run(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
}

#[tokio::test]
async fn kubectl_delete_and_wait_for_delete_follow_finalizers() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    k.run(&["create", "-f", path_str(&c.manifest("held.yaml", cm))]);
    k.run(&[
        "create",
        "-f",
        path_str(&c.manifest("d.yaml", DEPLOYMENT_YAML)),
    ]);

    assert_eq!(
        k.run(&["delete", "deployment", "web"]).trim(),
        "deployment.apps \"web\" deleted"
    );
    assert!(
        !k.output(&["get", "deployment", "web"]).status.success(),
        "the deployment is gone"
    );

    assert_eq!(
        k.run(&["delete", "configmap", "held", "--wait=false"])
            .trim(),
        "configmap \"held\" deleted"
    );
    let mut wait = ChildGuard(
        k.command()
            .args(["wait", "--for=delete", "configmap/held", "--timeout=30s"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        wait.0.try_wait().unwrap().is_none(),
        "kubectl wait returned while the finalizer still holds the object"
    );
    k.run(&[
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = wait.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl wait --for=delete did not return within 20s of the delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "kubectl wait --for=delete: {status}");
}

#[tokio::test]
async fn kubectl_discovers_resources_versions_and_the_server_version() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let resources = k.run(&["api-resources"]);
    assert_eq!(
        header(&resources),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{resources}"
    );
    assert_eq!(
        row(&resources, "deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        row(&resources, "namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );

    let versions: Vec<String> = k
        .run(&["api-versions"])
        .lines()
        .map(str::to_string)
        .collect();
    for want in ["v1", "apps/v1", "batch/v1"] {
        assert!(
            versions.iter().any(|v| v == want),
            "{want} missing from {versions:?}"
        );
    }

    let version: Value = serde_json::from_str(&k.run(&["version", "-o", "json"])).unwrap();
    let server = &version["serverVersion"];
    assert!(
        server["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.33.")),
        "{version}"
    );
    assert_eq!(server["major"], "1");
}

#[tokio::test]
async fn kubectl_apply_creates_then_configures_and_delete_by_label_removes_only_matches() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let v1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  labels: {set: a}\ndata: {a: \"1\", b: \"2\"}\n";
    let v2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  labels: {set: a}\ndata: {a: \"10\"}\n";
    let file = c.manifest("applied.yaml", v1);
    assert_eq!(
        k.run(&["apply", "-f", path_str(&file)]).trim(),
        "configmap/applied created"
    );
    assert_eq!(
        k.run(&["apply", "-f", path_str(&file)]).trim(),
        "configmap/applied unchanged"
    );
    std::fs::write(&file, v2).unwrap();
    assert_eq!(
        k.run(&["apply", "-f", path_str(&file)]).trim(),
        "configmap/applied configured"
    );
    let applied: Value =
        serde_json::from_str(&k.run(&["get", "configmap", "applied", "-o", "json"])).unwrap();
    assert_eq!(
        applied["data"],
        serde_json::json!({"a": "10"}),
        "apply removes what the last applied config had and this one lacks"
    );

    let other = c.manifest(
        "other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  labels: {set: b}\n",
    );
    k.run(&["create", "-f", path_str(&other)]);
    assert_eq!(
        k.run(&["delete", "configmaps", "-l", "set=a"]).trim(),
        "configmap \"applied\" deleted"
    );
    assert_eq!(
        // Only the labelled ones: `kube-root-ca.crt` (published in every namespace by
        // the serviceaccount loop) is not part of this test.
        k.run(&["get", "configmaps", "-l", "set", "-o", "name"])
            .trim(),
        "configmap/other"
    );
}

#[tokio::test]
async fn kubectl_delete_of_a_manifest_holding_its_namespace_deletes_everything_without_errors() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    // The namespace comes first, as in most rendered charts: kubectl deletes it first
    // and then each object in it, which must still be there to be deleted.
    let mut manifest = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n");
    for i in 0..20 {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf-{i}\n  namespace: shop\ndata:\n  k: v\n"
        ));
    }
    manifest.push_str("---\n");
    manifest
        .push_str(&DEPLOYMENT_YAML.replace("  name: web\n", "  name: web\n  namespace: shop\n"));
    let path = c.manifest("shop.yaml", &manifest);
    k.run(&["apply", "-f", path_str(&path)]);

    let out = k.output(&["delete", "-f", path_str(&path), "--timeout=60s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "kubectl delete -f failed ({}):\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "namespace \"shop\" deleted",
        "configmap \"conf-19\" deleted",
        "deployment.apps \"web\" deleted",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(
        !k.output(&["get", "namespace", "shop"]).status.success(),
        "the namespace is gone once kubectl delete returns"
    );
}
