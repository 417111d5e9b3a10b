use serde_json::json;

use super::*;

fn node_user(name: &str) -> UserInfo {
    UserInfo {
        name: format!("system:node:{name}"),
        groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        ..Default::default()
    }
}

fn request(
    user: UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    sub: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> Attributes {
    Attributes {
        user,
        verb: verb.into(),
        resource: Some(ResourceAttributes {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            selectors: Default::default(),
        }),
        path: String::new(),
    }
}

/// Pod `web` on node `a` uses secret `db`, config map `conf`, claim `data` and account
/// `runner`; pod `other` on node `b` uses secret `b-only`; volume `pv-1` is bound to
/// claim `data`.
fn authorizer() -> NodeAuthorizer {
    let authz = NodeAuthorizer::default();
    {
        let mut g = authz.graph_mut();
        g.put_pod(&json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {
                "nodeName": "a",
                "serviceAccountName": "runner",
                "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "k"}}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "db"}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}
                ]
            }
        }));
        g.put_pod(&json!({
            "metadata": {"namespace": "ns", "name": "other"},
            "spec": {"nodeName": "b", "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "b-only"}}]}]}
        }));
        g.put_volume(&json!({
            "metadata": {"name": "pv-1"},
            "spec": {"claimRef": {"namespace": "ns", "name": "data"}}
        }));
    }
    authz
}

const NO_RELATIONSHIP: &str = "no relationship found between node 'a' and this object";

#[test]
fn a_node_reads_only_what_its_own_pods_use_with_upstreams_reasons() {
    let authz = authorizer();
    let a = || node_user("a");
    let cases: Vec<(&str, Attributes, Verdict, Option<&str>)> = vec![
        (
            "its pod's secret",
            request(a(), "get", "", "secrets", None, Some("ns"), Some("db")),
            Verdict::Allow,
            None,
        ),
        (
            "another node's pod's secret",
            request(a(), "get", "", "secrets", None, Some("ns"), Some("b-only")),
            Verdict::NoOpinion,
            Some(NO_RELATIONSHIP),
        ),
        (
            "a secret of the same name in another namespace",
            request(a(), "get", "", "secrets", None, Some("other"), Some("db")),
            Verdict::NoOpinion,
            Some(NO_RELATIONSHIP),
        ),
        (
            "a list of secrets",
            request(a(), "list", "", "secrets", None, Some("ns"), None),
            Verdict::NoOpinion,
            Some("No Object name found"),
        ),
        (
            "an update of its pod's secret",
            request(a(), "update", "", "secrets", None, Some("ns"), Some("db")),
            Verdict::NoOpinion,
            Some("can only read resources of this type"),
        ),
        (
            "its pod's config map from an env reference",
            request(a(), "get", "", "configmaps", None, Some("ns"), Some("conf")),
            Verdict::Allow,
            None,
        ),
        (
            "its pod's claim",
            request(
                a(),
                "get",
                "",
                "persistentvolumeclaims",
                None,
                Some("ns"),
                Some("data"),
            ),
            Verdict::Allow,
            None,
        ),
        (
            "the volume bound to its pod's claim",
            request(
                a(),
                "get",
                "",
                "persistentvolumes",
                None,
                None,
                Some("pv-1"),
            ),
            Verdict::Allow,
            None,
        ),
        (
            "a list of volumes",
            request(a(), "list", "", "persistentvolumes", None, None, None),
            Verdict::NoOpinion,
            Some("can only get individual resources of this type"),
        ),
        (
            "a token for its pod's service account",
            request(
                a(),
                "create",
                "",
                "serviceaccounts",
                Some("token"),
                Some("ns"),
                Some("runner"),
            ),
            Verdict::Allow,
            None,
        ),
        (
            "a token for another service account",
            request(
                a(),
                "create",
                "",
                "serviceaccounts",
                Some("token"),
                Some("ns"),
                Some("default"),
            ),
            Verdict::NoOpinion,
            Some(NO_RELATIONSHIP),
        ),
        (
            "its own Lease",
            request(
                a(),
                "update",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                Some("a"),
            ),
            Verdict::Allow,
            None,
        ),
        (
            "another node's Lease",
            request(
                a(),
                "update",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-node-lease"),
                Some("b"),
            ),
            Verdict::NoOpinion,
            Some("can only access node lease with the same name as the requesting node"),
        ),
        (
            "a Lease elsewhere",
            request(
                a(),
                "get",
                "coordination.k8s.io",
                "leases",
                None,
                Some("kube-system"),
                Some("a"),
            ),
            Verdict::NoOpinion,
            Some("can only access leases in the \"kube-node-lease\" system namespace"),
        ),
        (
            "another node's CSINode",
            request(
                a(),
                "get",
                "storage.k8s.io",
                "csinodes",
                None,
                None,
                Some("b"),
            ),
            Verdict::NoOpinion,
            Some("can only access CSINode with the same name as the requesting node"),
        ),
        (
            "pod status, from the system:node rules",
            request(
                a(),
                "patch",
                "",
                "pods",
                Some("status"),
                Some("ns"),
                Some("other"),
            ),
            Verdict::Allow,
            None,
        ),
        (
            "a deployment, in no rule",
            request(
                a(),
                "get",
                "apps",
                "deployments",
                None,
                Some("ns"),
                Some("d"),
            ),
            Verdict::NoOpinion,
            None,
        ),
    ];
    for (name, attributes, verdict, reason) in cases {
        assert_eq!(authz.authorize(&attributes), verdict, "{name}");
        assert_eq!(authz.explain(&attributes).as_deref(), reason, "{name}");
    }
}

#[test]
fn users_that_are_not_nodes_get_no_opinion() {
    let authz = authorizer();
    let cases = [
        (
            "a user named like a node outside system:nodes",
            UserInfo {
                name: "system:node:a".into(),
                ..Default::default()
            },
        ),
        (
            "a member of system:nodes with another name",
            UserInfo {
                name: "alice".into(),
                groups: vec![NODES_GROUP.into()],
                ..Default::default()
            },
        ),
    ];
    for (name, user) in cases {
        let attributes = request(user, "get", "", "secrets", None, Some("ns"), Some("db"));
        assert_eq!(authz.authorize(&attributes), Verdict::NoOpinion, "{name}");
        assert_eq!(authz.explain(&attributes), None, "{name}");
    }
}

#[test]
fn a_secret_is_no_longer_readable_once_its_last_pod_on_the_node_is_gone() {
    let authz = authorizer();
    let get = request(
        node_user("a"),
        "get",
        "",
        "secrets",
        None,
        Some("ns"),
        Some("db"),
    );
    assert_eq!(authz.authorize(&get), Verdict::Allow);
    authz
        .graph_mut()
        .remove_pod(&json!({"metadata": {"namespace": "ns", "name": "web"}}));
    assert_eq!(authz.authorize(&get), Verdict::NoOpinion);
}

#[test]
fn a_pod_moved_off_the_node_no_longer_relates_its_objects() {
    let authz = authorizer();
    let get = request(
        node_user("a"),
        "get",
        "",
        "secrets",
        None,
        Some("ns"),
        Some("db"),
    );
    authz.graph_mut().put_pod(&json!({
        "metadata": {"namespace": "ns", "name": "web"},
        "spec": {"volumes": [{"name": "s", "secret": {"secretName": "db"}}]}
    }));
    assert_eq!(authz.authorize(&get), Verdict::NoOpinion);
}

/// Volume `pv-csi` is bound to claim `data` (used by pod `web` on node `a`), volume
/// `pv-b` to claim `b-data` of pod `on-b` on node `b`; each names secrets.
fn authorizer_with_volume_secrets() -> NodeAuthorizer {
    let authz = authorizer();
    {
        let mut g = authz.graph_mut();
        g.put_volume(&json!({
            "metadata": {"name": "pv-csi"},
            "spec": {
                "claimRef": {"namespace": "ns", "name": "data"},
                "csi": {
                    "driver": "d",
                    "volumeHandle": "h",
                    "nodePublishSecretRef": {"namespace": "ns", "name": "publish"},
                    "nodeStageSecretRef": {"namespace": "creds", "name": "stage"},
                    "nodeExpandSecretRef": {"namespace": "ns", "name": "expand"},
                    "controllerPublishSecretRef": {"namespace": "ns", "name": "controller"},
                    "controllerExpandSecretRef": {"namespace": "ns", "name": "controller-expand"}
                }
            }
        }));
        g.put_pod(&json!({
            "metadata": {"namespace": "ns", "name": "on-b"},
            "spec": {"nodeName": "b", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "b-data"}}]}
        }));
        g.put_volume(&json!({
            "metadata": {"name": "pv-b"},
            "spec": {
                "claimRef": {"namespace": "ns", "name": "b-data"},
                "csi": {"driver": "d", "volumeHandle": "h", "nodePublishSecretRef": {"namespace": "ns", "name": "b-publish"}}
            }
        }));
        g.put_volume(&json!({
            "metadata": {"name": "pv-rbd"},
            "spec": {
                "claimRef": {"namespace": "ns", "name": "data"},
                "rbd": {"monitors": ["m"], "image": "i", "secretRef": {"name": "ceph"}}
            }
        }));
    }
    authz
}

#[test]
fn a_node_gets_the_secrets_its_pods_volumes_name_for_the_node_and_no_others() {
    let authz = authorizer_with_volume_secrets();
    let cases = [
        ("CSI nodePublishSecretRef", "ns", "publish", true),
        (
            "CSI nodeStageSecretRef in its own namespace",
            "creds",
            "stage",
            true,
        ),
        ("CSI nodeExpandSecretRef", "ns", "expand", true),
        ("CSI controllerPublishSecretRef", "ns", "controller", false),
        (
            "CSI controllerExpandSecretRef",
            "ns",
            "controller-expand",
            false,
        ),
        (
            "the stage secret's name in the claim's namespace",
            "ns",
            "stage",
            false,
        ),
        (
            "a secret of another node's pod's volume",
            "ns",
            "b-publish",
            false,
        ),
        (
            "an rbd secretRef without namespace, in the claim's",
            "ns",
            "ceph",
            true,
        ),
    ];
    for (name, ns, secret, allowed) in cases {
        let get = request(
            node_user("a"),
            "get",
            "",
            "secrets",
            None,
            Some(ns),
            Some(secret),
        );
        let want = if allowed {
            Verdict::Allow
        } else {
            Verdict::NoOpinion
        };
        assert_eq!(authz.authorize(&get), want, "{name}");
    }
}

#[test]
fn a_volume_secret_is_no_longer_readable_once_the_volume_is_released_or_gone() {
    let authz = authorizer_with_volume_secrets();
    let get = |secret: &str| {
        request(
            node_user("a"),
            "get",
            "",
            "secrets",
            None,
            Some("ns"),
            Some(secret),
        )
    };
    assert_eq!(authz.authorize(&get("publish")), Verdict::Allow);
    authz.graph_mut().put_volume(&json!({
        "metadata": {"name": "pv-csi"},
        "spec": {"csi": {"driver": "d", "volumeHandle": "h", "nodePublishSecretRef": {"namespace": "ns", "name": "publish"}}}
    }));
    assert_eq!(
        authz.authorize(&get("publish")),
        Verdict::NoOpinion,
        "released"
    );
    assert_eq!(authz.authorize(&get("ceph")), Verdict::Allow);
    authz
        .graph_mut()
        .remove_volume(&json!({"metadata": {"name": "pv-rbd"}}));
    assert_eq!(authz.authorize(&get("ceph")), Verdict::NoOpinion, "deleted");
}

#[test]
fn pod_uses_lists_every_kind_of_reference() {
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "serviceAccountName": "sa",
            "imagePullSecrets": [{"name": "pull"}],
            "initContainers": [{"name": "i", "envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            "ephemeralContainers": [{"name": "e", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "eph", "key": "k"}}}]}],
            "volumes": [
                {"name": "proj", "projected": {"sources": [{"secret": {"name": "ps"}}, {"configMap": {"name": "pc"}}]}},
                {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-s"}}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
            ]
        },
        "status": {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu"}]}
    });
    let uses = graph::pod_uses(&pod);
    for want in [
        (Uses::ServiceAccount, "sa"),
        (Uses::Secret, "pull"),
        (Uses::ConfigMap, "init-cm"),
        (Uses::Secret, "eph"),
        (Uses::Secret, "ps"),
        (Uses::ConfigMap, "pc"),
        (Uses::Secret, "csi-s"),
        (Uses::PersistentVolumeClaim, "p-scratch"),
        (Uses::ResourceClaim, "p-gpu"),
    ] {
        assert!(
            uses.contains(&(want.0, want.1.to_string())),
            "{want:?} in {uses:?}"
        );
    }
}

fn with_fields(mut a: Attributes, raw: &str) -> Attributes {
    let query = crate::request::Query::parse(Some(&format!("fieldSelector={raw}")));
    if let Some(r) = a.resource.as_mut() {
        r.selectors = super::super::Selectors::of_request(&a.verb, &query);
    }
    a
}

#[test]
fn a_node_reads_pods_and_nodes_only_through_its_own_name_as_upstream_1_32() {
    let authz = authorizer();
    let a = || node_user("a");
    let pods = |verb: &str, name: Option<&str>| request(a(), verb, "", "pods", None, None, name);
    let nodes = |verb: &str, name: Option<&str>| request(a(), verb, "", "nodes", None, None, name);
    let cases: Vec<(&str, Attributes, Verdict, Option<&str>)> = vec![
        (
            "a watch of pods selecting its node",
            with_fields(pods("watch", None), "spec.nodeName%3Da"),
            Verdict::Allow,
            None,
        ),
        (
            "a list of pods selecting its node and a phase",
            with_fields(
                pods("list", None),
                "status.phase%3DRunning,spec.nodeName%3Da",
            ),
            Verdict::Allow,
            None,
        ),
        (
            "a list of every pod",
            pods("list", None),
            Verdict::NoOpinion,
            Some("can only list/watch pods with spec.nodeName field selector"),
        ),
        (
            "a list of pods selecting another node",
            with_fields(pods("list", None), "spec.nodeName%3Db"),
            Verdict::NoOpinion,
            Some("can only list/watch pods with spec.nodeName field selector"),
        ),
        (
            "a list of pods off its node",
            with_fields(pods("list", None), "spec.nodeName!%3Da"),
            Verdict::NoOpinion,
            Some("can only list/watch pods with spec.nodeName field selector"),
        ),
        (
            "a get of its pod",
            request(a(), "get", "", "pods", None, Some("ns"), Some("web")),
            Verdict::Allow,
            None,
        ),
        (
            "a get of another node's pod",
            request(a(), "get", "", "pods", None, Some("ns"), Some("other")),
            Verdict::NoOpinion,
            Some(NO_RELATIONSHIP),
        ),
        (
            "a mirror pod's creation",
            pods("create", None),
            Verdict::Allow,
            None,
        ),
        (
            "an update of a pod",
            pods("update", Some("web")),
            Verdict::NoOpinion,
            None,
        ),
        (
            "a get of its Node",
            nodes("get", Some("a")),
            Verdict::Allow,
            None,
        ),
        (
            "a watch of its Node by name",
            nodes("watch", Some("a")),
            Verdict::Allow,
            None,
        ),
        (
            "a get of another Node",
            nodes("get", Some("b")),
            Verdict::NoOpinion,
            Some("node 'a' cannot read 'b', only its own Node object"),
        ),
        (
            "a list of Nodes",
            nodes("list", None),
            Verdict::NoOpinion,
            Some("node 'a' cannot read all nodes, only its own Node object"),
        ),
        (
            "its registration",
            nodes("create", None),
            Verdict::Allow,
            None,
        ),
        (
            "a status patch",
            request(a(), "patch", "", "nodes", Some("status"), None, Some("a")),
            Verdict::Allow,
            None,
        ),
        (
            "a Node's deletion",
            nodes("delete", Some("a")),
            Verdict::NoOpinion,
            None,
        ),
    ];
    for (name, attributes, verdict, reason) in cases {
        assert_eq!(authz.authorize(&attributes), verdict, "{name}");
        assert_eq!(authz.explain(&attributes).as_deref(), reason, "{name}");
    }
}
