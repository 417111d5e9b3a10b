//! Table tests of strategic merge patch against upstream behaviour.

use serde_json::{json, Value};

use super::{apply, patch_meta_for, FieldMeta, SmpErrorKind, Strategy};

struct Case {
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    original: Value,
    patch: Value,
    want: Value,
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {"replicas": 2, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": containers},
        }},
    })
}

fn two_containers() -> Value {
    json!([
        {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "envoy:1"},
    ])
}

fn template_spec(patch: Value) -> Value {
    json!({"spec": {"template": {"spec": patch}}})
}

fn with_template_spec(mut object: Value, field: &str, value: Value) -> Value {
    object["spec"]["template"]["spec"][field] = value;
    object
}

#[test]
fn apply_table() {
    let cases = vec![
        Case {
            name: "merging containers by name: changing one image keeps the other",
            group: "apps",
            kind: "Deployment",
            original: deployment(two_containers()),
            patch: template_spec(json!({"containers": [{"name": "sidecar", "image": "envoy:2"}]})),
            want: deployment(json!([
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "sidecar", "image": "envoy:2"},
            ])),
        },
        Case {
            // Without $setElementOrder upstream puts elements new to the list
            // before the live ones.
            name: "adding an env var",
            group: "apps",
            kind: "Deployment",
            original: deployment(
                json!([{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}]),
            ),
            patch: template_spec(
                json!({"containers": [{"name": "web", "env": [{"name": "C", "value": "3"}]}]}),
            ),
            want: deployment(json!([{"name": "web", "image": "nginx:1",
                "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}]}])),
        },
        Case {
            name: "deleting a container with $patch: delete",
            group: "apps",
            kind: "Deployment",
            original: deployment(two_containers()),
            patch: template_spec(json!({"containers": [{"name": "sidecar", "$patch": "delete"}]})),
            want: deployment(json!([{"name": "web", "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}])),
        },
        Case {
            name: "replacing a list with $patch: replace",
            group: "apps",
            kind: "Deployment",
            original: deployment(two_containers()),
            patch: template_spec(
                json!({"containers": [{"$patch": "replace"}, {"name": "only", "image": "busybox"}]}),
            ),
            want: deployment(json!([{"name": "only", "image": "busybox"}])),
        },
        Case {
            name: "$setElementOrder orders the merged list",
            group: "apps",
            kind: "Deployment",
            original: deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: template_spec(json!({
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "x"}],
            })),
            want: deployment(json!([{"name": "c"}, {"name": "a", "image": "x"}, {"name": "b"}])),
        },
        Case {
            name: "$setElementOrder places a new element where it names it",
            group: "apps",
            kind: "Deployment",
            original: deployment(json!([{"name": "a"}, {"name": "b"}])),
            patch: template_spec(json!({
                "$setElementOrder/containers": [{"name": "a"}, {"name": "n"}, {"name": "b"}],
                "containers": [{"name": "n", "image": "new"}],
            })),
            want: deployment(json!([{"name": "a"}, {"name": "n", "image": "new"}, {"name": "b"}])),
        },
        Case {
            name: "$retainKeys drops a volume source",
            group: "apps",
            kind: "Deployment",
            original: with_template_spec(
                deployment(json!([{"name": "web"}])),
                "volumes",
                json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]),
            ),
            patch: template_spec(json!({
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                "volumes": [{"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/x"}}],
            })),
            want: with_template_spec(
                deployment(json!([{"name": "web"}])),
                "volumes",
                json!([{"name": "data", "hostPath": {"path": "/x"}}, {"name": "cfg", "configMap": {"name": "c"}}]),
            ),
        },
        Case {
            name: "$retainKeys on the deployment strategy",
            group: "apps",
            kind: "Deployment",
            original: json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
        },
        Case {
            name: "null deletes a label",
            group: "apps",
            kind: "Deployment",
            original: deployment(json!([{"name": "web"}])),
            patch: json!({"metadata": {"labels": {"tier": null, "missing": null}}}),
            want: {
                let mut d = deployment(json!([{"name": "web"}]));
                d["metadata"]["labels"] = json!({"app": "web"});
                d
            },
        },
        Case {
            name: "finalizers are a union",
            group: "",
            kind: "ConfigMap",
            original: json!({"metadata": {"finalizers": ["a", "b"]}, "data": {"k": "v"}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}, "data": {"k2": "v2"}}),
            want: json!({"metadata": {"finalizers": ["a", "b", "c"]}, "data": {"k": "v", "k2": "v2"}}),
        },
        Case {
            name: "$deleteFromPrimitiveList/finalizers removes values",
            group: "",
            kind: "ConfigMap",
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            want: json!({"metadata": {"finalizers": ["a", "c"]}}),
        },
        Case {
            name: "tolerations are replaced as a whole",
            group: "",
            kind: "Pod",
            original: json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
            want: json!({"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}}),
        },
        Case {
            name: "service ports merge by port",
            group: "",
            kind: "Service",
            original: json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: json!({"spec": {"ports": [
                {"name": "http", "port": 80, "targetPort": 9090}, {"name": "https", "port": 443}]}}),
        },
        Case {
            name: "kubectl rollout restart adds the restartedAt annotation",
            group: "apps",
            kind: "Deployment",
            original: deployment(two_containers()),
            patch: json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-11-23T03:00:00Z"}}}}}),
            want: {
                let mut d = deployment(two_containers());
                d["spec"]["template"]["metadata"]["annotations"] =
                    json!({"kubectl.kubernetes.io/restartedAt": "2026-11-23T03:00:00Z"});
                d
            },
        },
        Case {
            name: "kubectl set image patch shape",
            group: "apps",
            kind: "Deployment",
            original: deployment(
                json!([{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}]),
            ),
            patch: json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
            want: deployment(
                json!([{"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]}]),
            ),
        },
        Case {
            name: "kubectl apply removing an env var from the file",
            group: "apps",
            kind: "Deployment",
            original: deployment(two_containers()),
            patch: template_spec(json!({
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "web"}],
            })),
            want: deployment(json!([
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "envoy:1"},
            ])),
        },
        Case {
            name: "$patch: replace in a map replaces the map",
            group: "",
            kind: "Pod",
            original: json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}}}),
            patch: json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}}),
            want: json!({"spec": {"nodeSelector": {"c": "3"}}}),
        },
        Case {
            // Upstream leaves an empty map where the deleted one was.
            name: "$patch: delete in a map empties it",
            group: "",
            kind: "Pod",
            original: json!({"spec": {"affinity": {"nodeAffinity": {}}, "hostname": "h"}}),
            patch: json!({"spec": {"affinity": {"$patch": "delete"}}}),
            want: json!({"spec": {"affinity": {}, "hostname": "h"}}),
        },
        Case {
            name: "directives are consumed when the field is new",
            group: "",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "web"}]}}),
            patch: json!({"spec": {
                "$setElementOrder/volumes": [{"name": "v"}],
                "volumes": [{"$retainKeys": ["emptyDir", "name"], "name": "v", "emptyDir": {}}, {"name": "gone", "$patch": "delete"}],
                "containers": [{"name": "web", "$setElementOrder/env": [{"name": "A"}], "env": [{"name": "A", "value": "1", "valueFrom": null}]}],
            }}),
            want: json!({"spec": {
                "volumes": [{"name": "v", "emptyDir": {}}],
                "containers": [{"name": "web", "env": [{"name": "A", "value": "1"}]}],
            }}),
        },
        Case {
            name: "cronjob reaches the pod spec through the job template",
            group: "batch",
            kind: "CronJob",
            original: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}}}}),
            patch: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}}}),
            want: json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}}}}}),
        },
        Case {
            name: "node status conditions merge by type",
            group: "",
            kind: "Node",
            original: json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}}),
            patch: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            want: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}}),
        },
        Case {
            // The example of upstream's preserve-order design proposal.
            name: "without $setElementOrder server-only elements interleave by live order",
            group: "",
            kind: "Pod",
            original: json!({"spec": {"containers": [{"name": "B"}, {"name": "C"}, {"name": "A"}]}}),
            patch: json!({"spec": {"containers": [{"name": "A", "image": "a"}, {"name": "B", "image": "b"}, {"name": "D"}]}}),
            want: json!({"spec": {"containers": [
                {"name": "C"}, {"name": "A", "image": "a"}, {"name": "B", "image": "b"}, {"name": "D"}]}}),
        },
        Case {
            name: "$setElementOrder on a primitive list",
            group: "",
            kind: "Secret",
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
            want: json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
        },
        Case {
            name: "merge keys compare as numbers",
            group: "",
            kind: "Service",
            original: json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            patch: json!({"spec": {"ports": [{"port": 80.0, "targetPort": 8080}]}}),
            want: json!({"spec": {"ports": [{"port": 80.0, "name": "http", "targetPort": 8080}]}}),
        },
        Case {
            name: "$patch: replace list element when the list is new",
            group: "",
            kind: "Pod",
            original: json!({"spec": {}}),
            patch: json!({"spec": {"imagePullSecrets": [{"$patch": "replace"}, {"name": "reg"}]}}),
            want: json!({"spec": {"imagePullSecrets": [{"name": "reg"}]}}),
        },
        Case {
            name: "owner references merge by uid",
            group: "apps",
            kind: "ReplicaSet",
            original: json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]}}),
            want: json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "controller": true}]}}),
        },
        Case {
            name: "secret data merges as a map",
            group: "",
            kind: "Secret",
            original: json!({"data": {"a": "YQ==", "b": "Yg=="}, "type": "Opaque"}),
            patch: json!({"data": {"b": null, "c": "Yw=="}}),
            want: json!({"data": {"a": "YQ==", "c": "Yw=="}, "type": "Opaque"}),
        },
    ];
    for c in cases {
        let meta = patch_meta_for(c.group, c.kind);
        let got = apply(&c.original, &c.patch, &meta)
            .unwrap_or_else(|e| panic!("{}: unexpected error: {e}", c.name));
        assert_eq!(got, c.want, "{}: got {got:#}", c.name);
    }
}

#[test]
fn error_table() {
    let cases: Vec<(&str, Value, Value, &str, SmpErrorKind)> = vec![
        ("unknown $patch in a map", json!({"spec": {"nodeSelector": {"a": "1"}}}),
            json!({"spec": {"nodeSelector": {"$patch": "merge-ish", "b": "2"}}}),
            "unknown patch type: merge-ish in map: map[$patch:merge-ish b:2]", SmpErrorKind::Other),
        ("unknown $patch in a list element", json!({"spec": {"containers": [{"name": "web"}]}}),
            json!({"spec": {"containers": [{"name": "web", "$patch": "bogus"}]}}),
            "unknown patch type: bogus in map: map[$patch:bogus name:web]", SmpErrorKind::Other),
        ("$patch: merge in a list element", json!({"spec": {"containers": [{"name": "web"}]}}),
            json!({"spec": {"containers": [{"$patch": "merge"}]}}),
            "merging lists cannot yet be specified in the patch", SmpErrorKind::Other),
        ("element without its merge key", json!({"spec": {"containers": [{"name": "web"}]}}),
            json!({"spec": {"containers": [{"image": "x", "ports": [{"containerPort": 80}]}]}}),
            "map: map[image:x ports:[map[containerPort:80]]] does not contain declared merge key: name", SmpErrorKind::Other),
        ("$retainKeys not a list", json!({"spec": {}}),
            json!({"spec": {"$retainKeys": "name"}}), "invalid patch format of retainKeys", SmpErrorKind::BadRequest),
        ("patch field outside $retainKeys", json!({"spec": {}}),
            json!({"spec": {"$retainKeys": ["a"], "b": 1}}), "invalid patch format of retainKeys", SmpErrorKind::BadRequest),
        ("$setElementOrder without a field", json!({"spec": {}}),
            json!({"spec": {"$setElementOrder": []}}), "invalid patch format of setElementOrder list", SmpErrorKind::BadRequest),
        ("$deleteFromPrimitiveList without a field", json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
            "invalid patch format of primitive list", SmpErrorKind::BadRequest),
        ("$deleteFromPrimitiveList with objects", json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [{"a": 1}]}}),
            "invalid patch format of primitive list", SmpErrorKind::BadRequest),
        ("$deleteFromPrimitiveList with objects on a merge-key list", json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"$deleteFromPrimitiveList/containers": [{"name": "a"}]}}),
            "invalid patch format of primitive list", SmpErrorKind::BadRequest),
        ("$setElementOrder disagreeing with the patch list", json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}]}}),
            "The order in patch list:\n[map[name:b] map[name:a]]\n doesn't match $setElementOrder list:\n[map[name:a] map[name:b]]\n",
            SmpErrorKind::Other),
        ("list of lists", json!({"metadata": {}}),
            json!({"metadata": {"finalizers": [["b"]]}}), "lists of lists are not supported", SmpErrorKind::Unprocessable),
        ("mixed element types", json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [["b"]]}}), "list element types are not identical: [[a] [[b]]]", SmpErrorKind::Other),
        ("patch not an object", json!({}), json!([1]), "invalid JSON document", SmpErrorKind::BadRequest),
    ];
    let meta = patch_meta_for("", "Pod");
    for (name, original, patch, message, kind) in cases {
        let err = apply(&original, &patch, &meta).expect_err(name);
        assert_eq!(err.message(), message, "{name}");
        assert_eq!(err.kind(), kind, "{name}");
    }
}

#[test]
fn patch_meta_table() {
    let merge = FieldMeta::merge_by;
    let cases: Vec<(&str, &str, &str, FieldMeta)> = vec![
        (
            "apps",
            "Deployment",
            "spec.template.spec.containers",
            merge("name"),
        ),
        (
            "apps",
            "Deployment",
            "spec.template.spec.containers.env",
            merge("name"),
        ),
        (
            "apps",
            "Deployment",
            "spec.template.spec.initContainers.ports",
            merge("containerPort"),
        ),
        (
            "apps",
            "Deployment",
            "spec.template.spec.volumes",
            merge("name").and_retain_keys(),
        ),
        (
            "apps",
            "Deployment",
            "spec.template.spec.tolerations",
            FieldMeta::default(),
        ),
        (
            "apps",
            "Deployment",
            "spec.template.metadata.finalizers",
            FieldMeta::merge_primitives(),
        ),
        (
            "apps",
            "Deployment",
            "spec.strategy",
            FieldMeta::retain_keys(),
        ),
        ("apps", "Deployment", "status.conditions", merge("type")),
        (
            "",
            "Pod",
            "spec.ephemeralContainers.volumeMounts",
            merge("mountPath"),
        ),
        (
            "",
            "Pod",
            "spec.containers.volumeDevices",
            merge("devicePath"),
        ),
        ("", "Pod", "spec.containers.envFrom", FieldMeta::default()),
        (
            "",
            "Pod",
            "spec.topologySpreadConstraints",
            merge("topologyKey"),
        ),
        ("", "Pod", "spec.hostAliases", merge("ip")),
        ("", "Pod", "status.podIPs", merge("ip")),
        ("", "Pod", "metadata.ownerReferences", merge("uid")),
        (
            "",
            "PodTemplate",
            "template.spec.imagePullSecrets",
            merge("name"),
        ),
        (
            "",
            "ReplicationController",
            "spec.template.spec.resourceClaims",
            merge("name").and_retain_keys(),
        ),
        (
            "batch",
            "CronJob",
            "spec.jobTemplate.spec.template.spec.containers",
            merge("name"),
        ),
        ("batch", "Job", "status.conditions", merge("type")),
        ("", "Node", "spec.taints", FieldMeta::default()),
        ("", "Node", "status.addresses", merge("type")),
        ("", "Service", "spec.ports", merge("port")),
        (
            "policy",
            "PodDisruptionBudget",
            "spec.selector",
            FieldMeta::replace(),
        ),
        ("", "ConfigMap", "data", FieldMeta::default()),
    ];
    for (group, kind, path, want) in cases {
        let got = patch_meta_for(group, kind).get(path);
        assert_eq!(got, want, "{group}/{kind} {path}");
    }
    assert_eq!(FieldMeta::default().strategy, Strategy::Default);
}
