//! A release's lifecycle: install, upgrade, history, rollback, status and uninstall, with
//! Helm storing each revision in a `sh.helm.release.v1.<name>.v<n>` Secret (protobuf writes).

use crate::{path_str, test_chart, Cluster};

/// The release Secrets Helm keeps for `release`.
fn release_secrets(c: &Cluster, release: &str) -> Vec<String> {
    c.names("secrets")
        .into_iter()
        .filter(|n| n.starts_with(&format!("secret/sh.helm.release.v1.{release}.")))
        .collect()
}

/// The revision numbers `helm history` lists, with each revision's status.
fn history(c: &Cluster, release: &str) -> Vec<(String, String)> {
    c.helm(&["history", release])
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').map(str::trim).collect();
            (cols[0].to_string(), cols[2].to_string())
        })
        .collect()
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_the_chart_helm_create_writes() {
    let c = Cluster::start();
    c.helm(&["create", "mychart"]);
    let deploy = "deployment/rel-mychart";

    let installed = c.helm(&["install", "rel", "./mychart"]);
    assert!(
        installed.contains("STATUS: deployed") && installed.contains("REVISION: 1"),
        "{installed}"
    );
    assert_eq!(c.get(deploy, "{.spec.replicas}"), "1");
    for object in ["service/rel-mychart", "serviceaccount/rel-mychart"] {
        assert_eq!(c.names(object), [object], "helm install created {object}");
    }
    assert_eq!(
        c.get(
            deploy,
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by}"
        ),
        "Helm"
    );

    c.helm(&["upgrade", "rel", "./mychart", "--set", "replicaCount=2"]);
    assert_eq!(c.get(deploy, "{.spec.replicas}"), "2");
    assert_eq!(
        history(&c, "rel"),
        [
            ("1".into(), "superseded".into()),
            ("2".into(), "deployed".into())
        ]
    );

    let rolled_back = c.helm(&["rollback", "rel", "1"]);
    assert!(
        rolled_back.contains("Rollback was a success"),
        "{rolled_back}"
    );
    assert_eq!(c.get(deploy, "{.spec.replicas}"), "1");
    let status = c.helm(&["status", "rel"]);
    assert!(
        status.contains("STATUS: deployed") && status.contains("REVISION: 3"),
        "{status}"
    );
    assert_eq!(
        release_secrets(&c, "rel").len(),
        3,
        "one Secret per revision"
    );

    let uninstalled = c.helm(&["uninstall", "rel"]);
    assert_eq!(uninstalled.trim(), "release \"rel\" uninstalled");
    assert_eq!(
        release_secrets(&c, "rel"),
        Vec::<String>::new(),
        "no release Secrets are left"
    );
    let left: Vec<String> = c
        .names("deployments,services,serviceaccounts,configmaps")
        .into_iter()
        .filter(|n| n.ends_with("/rel-mychart"))
        .collect();
    assert!(left.is_empty(), "chart objects left behind: {left:?}");
    let gone = c.helm_output(&["status", "rel"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("release: not found"));
}

#[test]
fn helm_installs_upgrades_and_uninstalls_a_chart_with_a_crd_statefulset_rbac_and_a_hook() {
    let c = Cluster::start();
    let chart = test_chart("stateful");
    let chart = path_str(&chart);
    // No Job controller runs the pre-install hook yet, so Helm is told to skip hooks.
    c.helm(&["install", "st", chart, "--no-hooks"]);

    assert_eq!(
        c.names("crd/gadgets.charts.example.com"),
        ["customresourcedefinition.apiextensions.k8s.io/gadgets.charts.example.com"]
    );
    assert_eq!(
        c.get("gadget/st-gadget", "{.spec.color}"),
        "blue",
        "the chart's custom resource uses its CRD"
    );
    for object in [
        "statefulset.apps/st-db",
        "service/st-db",
        "configmap/st-config",
        "serviceaccount/st-sa",
        "role.rbac.authorization.k8s.io/st-role",
        "rolebinding.rbac.authorization.k8s.io/st-rolebinding",
        "clusterrole.rbac.authorization.k8s.io/st-default-gadget-reader",
    ] {
        assert_eq!(c.names(object), [object], "helm install created {object}");
    }
    assert_eq!(
        c.get("service/st-db", "{.spec.clusterIP}"),
        "None",
        "a headless Service stays headless"
    );
    assert!(c.names("jobs").is_empty(), "--no-hooks creates no hook Job");
    let checksum = "{.spec.template.metadata.annotations.checksum/config}";
    let first = c.get("statefulset/st-db", checksum);
    assert_eq!(first.len(), 64, "a sha256 of the ConfigMap: {first:?}");

    c.helm(&[
        "upgrade",
        "st",
        chart,
        "--no-hooks",
        "--set",
        "greeting=bye",
    ]);
    assert_eq!(c.get("configmap/st-config", "{.data.greeting}"), "bye");
    let second = c.get("statefulset/st-db", checksum);
    assert_ne!(
        first, second,
        "the changed ConfigMap changes the template's checksum"
    );
    assert_eq!(c.get("statefulset/st-db", "{.metadata.generation}"), "2");
    assert!(c.helm(&["status", "st"]).contains("REVISION: 2"));

    c.helm(&["uninstall", "st", "--no-hooks"]);
    assert!(release_secrets(&c, "st").is_empty());
    let left: Vec<String> = c
        .names("statefulsets,services,configmaps,serviceaccounts,roles,rolebindings,clusterroles,gadgets")
        .into_iter()
        .filter(|n| n.split_once('/').is_some_and(|(_, name)| name.starts_with("st-")))
        .collect();
    assert!(left.is_empty(), "chart objects left behind: {left:?}");
    // As upstream: CRDs from a chart's crds/ folder are never deleted by Helm.
    assert_eq!(c.names("crd/gadgets.charts.example.com").len(), 1);
}
