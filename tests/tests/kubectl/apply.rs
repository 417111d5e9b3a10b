//! `kubectl apply` as users run it: a folder of manifests edited and re-applied,
//! server-side apply and its conflicts, `kubectl diff`, and objects too big for the
//! last-applied annotation.

use std::fmt::Write as _;

use crate::common::{Backend, Kubectl};
use crate::{path_str, Cluster};

const CONFIGMAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data:
  kept: \"1\"
  dropped: \"2\"
";

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox
        env:
        - {name: KEPT, value: \"1\"}
        - {name: DROPPED, value: \"2\"}
";

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
";

/// A folder `app/` holding a ConfigMap, a Deployment and a Service, as a user keeps them.
fn app_folder(c: &Cluster) -> std::path::PathBuf {
    let dir = c.dir.path().join("app");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, content) in [
        ("configmap.yaml", CONFIGMAP),
        ("deployment.yaml", DEPLOYMENT),
        ("service.yaml", SERVICE),
    ] {
        std::fs::write(dir.join(file), content).unwrap();
    }
    dir
}

/// Removes every line containing `needle` from a file.
fn drop_lines(path: &std::path::Path, needle: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, text, "{needle} is in {}", path.display());
    std::fs::write(path, kept).unwrap();
}

fn get(k: &Kubectl, what: &str, jsonpath: &str) -> String {
    k.run(&["get", what, "-o", &format!("jsonpath={jsonpath}")])
}

#[tokio::test]
async fn kubectl_apply_of_a_folder_removes_the_fields_dropped_from_its_files() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let dir = app_folder(&c);
    let first = k.run(&["apply", "-f", path_str(&dir)]);
    for line in [
        "configmap/conf created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(first.contains(line), "{first}");
    }

    drop_lines(&dir.join("configmap.yaml"), "dropped");
    drop_lines(&dir.join("deployment.yaml"), "DROPPED");
    let second = k.run(&["apply", "-f", path_str(&dir)]);
    for line in [
        "configmap/conf configured",
        "deployment.apps/web configured",
        "service/web unchanged",
    ] {
        assert!(second.contains(line), "{second}");
    }
    assert_eq!(get(&k, "configmap/conf", "{.data}"), r#"{"kept":"1"}"#);
    assert_eq!(
        get(
            &k,
            "deployment/web",
            "{.spec.template.spec.containers[0].env}"
        ),
        r#"[{"name":"KEPT","value":"1"}]"#
    );
    // The server's own fields survive a re-apply: the ClusterIP it allocated stays.
    assert!(get(&k, "service/web", "{.spec.clusterIP}").starts_with("10.43."));
}

#[tokio::test]
async fn kubectl_diff_shows_a_pending_change_exits_1_and_changes_nothing() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let dir = app_folder(&c);
    k.run(&["apply", "-f", path_str(&dir)]);
    let unchanged = k.output(&["diff", "-f", path_str(&dir)]);
    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&unchanged.stderr)
    );
    assert!(
        unchanged.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&unchanged.stdout)
    );

    let rv = get(&k, "configmap/conf", "{.metadata.resourceVersion}");
    drop_lines(&dir.join("configmap.yaml"), "dropped");
    let changed = k.output(&["diff", "-f", path_str(&dir)]);
    let out = String::from_utf8_lossy(&changed.stdout);
    assert_eq!(
        changed.status.code(),
        Some(1),
        "{out}\n{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert!(out.contains("-  dropped: \"2\""), "{out}");
    assert!(
        !out.contains("Deployment.default.web"),
        "the Deployment did not change:\n{out}"
    );

    // The diff was a dry run: nothing was written.
    assert_eq!(get(&k, "configmap/conf", "{.metadata.resourceVersion}"), rv);
    assert_eq!(get(&k, "configmap/conf", "{.data.dropped}"), "2");
}

#[tokio::test]
async fn kubectl_apply_server_side_conflicts_with_a_scale_until_forced() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let file = c.manifest("web.yaml", DEPLOYMENT);
    assert_eq!(
        k.run(&["apply", "--server-side", "-f", path_str(&file)])
            .trim(),
        "deployment.apps/web serverside-applied"
    );
    k.run(&["scale", "deployment/web", "--replicas=3"]);

    let refused = k.output(&["apply", "--server-side", "-f", path_str(&file)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with"),
        "{stderr}"
    );
    assert!(stderr.contains(".spec.replicas"), "{stderr}");
    assert_eq!(
        get(&k, "deployment/web", "{.spec.replicas}"),
        "3",
        "a refused apply changes nothing"
    );

    k.run(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&file),
    ]);
    assert_eq!(get(&k, "deployment/web", "{.spec.replicas}"), "1");
}

#[tokio::test]
async fn kubectl_apply_server_side_conflicts_with_a_client_side_apply_of_another_value() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let file = c.manifest("conf.yaml", CONFIGMAP);
    k.run(&["apply", "-f", path_str(&file)]);
    let other = c.manifest(
        "other.yaml",
        &CONFIGMAP.replace("kept: \"1\"", "kept: \"changed\""),
    );

    let refused = k.output(&["apply", "--server-side", "-f", path_str(&other)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .data.kept"#),
        "{stderr}"
    );
    k.run(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&other),
    ]);
    assert_eq!(get(&k, "configmap/conf", "{.data.kept}"), "changed");
}

#[tokio::test]
async fn kubectl_delete_with_a_server_dry_run_deletes_nothing() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    k.run(&["apply", "-f", path_str(&app_folder(&c))]);
    let out = k.run(&[
        "delete",
        "-f",
        path_str(&c.dir.path().join("app")),
        "--dry-run=server",
    ]);
    assert!(
        out.contains("configmap \"conf\" deleted (server dry run)"),
        "{out}"
    );
    assert_eq!(
        k.run(&[
            "get",
            "configmap,deployment,service",
            "-l",
            "app=web",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        1
    );
    assert_eq!(get(&k, "configmap/conf", "{.metadata.name}"), "conf");
    assert_eq!(get(&k, "deployment/web", "{.metadata.name}"), "web");
}

/// A CRD whose schema descriptions make its YAML over 300 KiB.
fn big_crd() -> String {
    let mut yaml = String::from(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: bigs.example.com
spec:
  group: example.com
  names: {plural: bigs, singular: big, kind: Big, listKind: BigList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
",
    );
    let sentence = "A deliberately long description, as generated CRDs of large operators carry. ";
    for i in 0..300 {
        let description = sentence.repeat(14);
        writeln!(yaml, "              field{i}:\n                type: string\n                description: \"{i} {description}\"").unwrap();
    }
    assert!(yaml.len() > 300 * 1024, "{} bytes", yaml.len());
    yaml
}

#[tokio::test]
async fn a_crd_too_big_for_the_last_applied_annotation_applies_only_server_side() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let file = c.manifest("big-crd.yaml", &big_crd());

    let client_side = k.output(&["apply", "-f", path_str(&file)]);
    let stderr = String::from_utf8_lossy(&client_side.stderr);
    assert!(!client_side.status.success(), "{stderr}");
    assert!(
        stderr.contains("metadata.annotations: Too long: must have at most 262144 bytes"),
        "{stderr}"
    );
    let missing = k.output(&["get", "crd", "bigs.example.com"]);
    assert!(
        !missing.status.success(),
        "the refused apply created nothing"
    );

    assert_eq!(
        k.run(&["apply", "--server-side", "-f", path_str(&file)])
            .trim(),
        "customresourcedefinition.apiextensions.k8s.io/bigs.example.com serverside-applied"
    );
    assert!(k
        .run(&["get", "crd", "bigs.example.com", "-o", "name"])
        .contains("bigs.example.com"));
}

/// A chart-rendered Deployment full of empty values, as templates leave them.
const EMPTY_VALUES: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: chart
  annotations: {}
  labels: {app: chart}
spec:
  paused: false
  minReadySeconds: 0
  selector:
    matchLabels: {app: chart}
  template:
    metadata:
      annotations: null
      labels: {app: chart}
    spec:
      nodeSelector: {}
      tolerations: []
      containers:
      - name: main
        image: busybox
        env: []
        stdin: false
";

#[tokio::test]
async fn empty_values_of_an_applied_manifest_are_not_stored_and_a_rediff_shows_nothing() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let file = c.dir.path().join("chart.yaml");
    std::fs::write(&file, EMPTY_VALUES).unwrap();
    k.run(&["apply", "--server-side", "-f", path_str(&file)]);
    let live = get(&k, "deployment/chart", "{.metadata}{.spec}");
    for empty in [
        "\"annotations\":{}",
        "\"nodeSelector\"",
        "\"tolerations\"",
        "\"env\"",
        "\"paused\"",
        "\"minReadySeconds\"",
        "\"stdin\"",
    ] {
        assert!(!live.contains(empty), "{empty} is stored: {live}");
    }
    let out = k.output(&["diff", "--server-side", "-f", path_str(&file)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
