//! Tests of protobuf body decoding, with bodies built by a tiny encoder (field numbers as in
//! the upstream generated.proto files).

use serde_json::json;

use super::*;

pub(crate) mod encode;
mod kubectl;

use encode::{body, Msg};

/// ObjectMeta as a Go client sends it: name, namespace, the empty strings and the zero creationTimestamp.
fn meta(name: &str) -> Msg {
    Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, "default")
        .msg(8, Msg::new())
}

fn quantity(s: &str) -> Msg {
    Msg::new().str(1, s)
}

#[test]
fn a_configmap_with_data_and_labels_decodes_to_its_json_form() {
    let cm = Msg::new()
        .msg(
            1,
            meta("settings")
                .entry(11, "app", b"web")
                .entry(11, "tier", b"front"),
        )
        .entry(2, "color", b"blue")
        .entry(2, "empty", b"");
    let got = decode_body(&body("v1", "ConfigMap", cm)).unwrap();
    let want = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default",
                     "labels": {"app": "web", "tier": "front"}},
        "data": {"color": "blue", "empty": ""},
    });
    assert_eq!(got, want);
}

#[test]
fn a_secret_with_binary_data_decodes_to_base64_and_keeps_its_type() {
    let secret = Msg::new()
        .msg(1, meta("sh.helm.release.v1.web.v1"))
        .entry(2, "release", &[0x1f, 0x8b, 0x08, 0x00, 0xff])
        .str(3, "helm.sh/release.v1");
    let got = decode_body(&body("v1", "Secret", secret)).unwrap();
    assert_eq!(got["data"], json!({"release": "H4sIAP8="}));
    assert_eq!(got["type"], json!("helm.sh/release.v1"));
    assert_eq!(got["kind"], json!("Secret"));
}

#[test]
fn a_deployment_with_a_pod_template_decodes_to_its_json_form() {
    let container = Msg::new()
        .str(1, "nginx")
        .str(2, "nginx:1.27")
        .msg(6, Msg::new().int(3, 80).str(4, "TCP"))
        .msg(7, Msg::new().str(1, "MODE").str(2, "prod"))
        .msg(
            8,
            Msg::new().msg(2, Msg::new().str(1, "cpu").msg(2, quantity("100m"))),
        );
    let template = Msg::new()
        .msg(1, Msg::new().entry(11, "app", b"web"))
        .msg(2, Msg::new().msg(2, container));
    let spec = Msg::new()
        .int(1, 3)
        .msg(2, Msg::new().entry(1, "app", b"web"))
        .msg(3, template)
        .msg(4, Msg::new());
    let deploy = Msg::new()
        .msg(1, Msg::new().str(1, "web"))
        .msg(2, spec)
        .msg(3, Msg::new());
    let got = decode_body(&body("apps/v1", "Deployment", deploy)).unwrap();
    let want = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "nginx", "image": "nginx:1.27",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "prod"}],
                    "resources": {"requests": {"cpu": "100m"}},
                }]},
            },
            "strategy": {},
        },
        "status": {},
    });
    assert_eq!(got, want);
}

#[test]
fn a_job_with_a_zero_backoff_limit_keeps_it_and_reads_packed_and_unpacked_exit_codes() {
    let packed = Msg::new().str(2, "In").packed(3, &[1, 2]);
    let unpacked = Msg::new().str(2, "NotIn").int(3, 42).int(3, -1);
    let policy = Msg::new()
        .msg(1, Msg::new().str(1, "FailJob").msg(2, packed))
        .msg(1, Msg::new().str(1, "Ignore").msg(2, unpacked));
    let pod = Msg::new()
        .msg(2, Msg::new().str(1, "work").str(2, "busybox"))
        .str(3, "Never");
    let spec = Msg::new()
        .int(7, 0)
        .msg(6, Msg::new().msg(2, pod))
        .msg(11, policy);
    let got = decode_body(&body(
        "batch/v1",
        "Job",
        Msg::new().msg(1, Msg::new().str(1, "once")).msg(2, spec),
    ))
    .unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "backoffLimit": 0,
            "template": {"spec": {"containers": [{"name": "work", "image": "busybox"}], "restartPolicy": "Never"}},
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2]}},
                {"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [42, -1]}},
            ]},
        })
    );
}

#[test]
fn a_cronjob_with_a_schedule_decodes_to_its_json_form() {
    let pod = Msg::new()
        .msg(2, Msg::new().str(1, "tick").str(2, "busybox"))
        .str(3, "OnFailure");
    let job_template = Msg::new()
        .msg(1, Msg::new())
        .msg(2, Msg::new().msg(6, Msg::new().msg(2, pod)));
    let spec = Msg::new().str(1, "*/5 * * * *").msg(5, job_template);
    let got = decode_body(&body(
        "batch/v1",
        "CronJob",
        Msg::new().msg(1, meta("tick")).msg(2, spec),
    ))
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"metadata": {}, "spec": {"template": {"spec": {
                    "containers": [{"name": "tick", "image": "busybox"}], "restartPolicy": "OnFailure"}}}},
            },
        })
    );
}

#[test]
fn a_service_decodes_int_or_string_target_ports_and_its_creation_timestamp() {
    let by_name = Msg::new()
        .str(1, "http")
        .int(3, 80)
        .msg(4, Msg::new().int(1, 1).str(3, "web"));
    let by_number = Msg::new()
        .str(1, "https")
        .int(3, 443)
        .msg(4, Msg::new().int(1, 0).int(2, 8443));
    let spec = Msg::new()
        .msg(1, by_name)
        .msg(1, by_number)
        .entry(2, "app", b"web")
        .str(4, "ClusterIP");
    let metadata = Msg::new()
        .str(1, "web")
        .msg(8, Msg::new().int(1, 1_704_164_645));
    let got = decode_body(&body(
        "v1",
        "Service",
        Msg::new().msg(1, metadata).msg(2, spec),
    ))
    .unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "creationTimestamp": "2024-01-02T03:04:05Z"},
            "spec": {
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "web"},
                    {"name": "https", "port": 443, "targetPort": 8443},
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
        })
    );
}

#[test]
fn a_controller_revision_embeds_its_raw_json_data() {
    let rev = Msg::new()
        .msg(1, Msg::new().str(1, "web-1"))
        .msg(2, Msg::new().bytes(1, br#"{"spec":{"a":1}}"#))
        .int(3, 1);
    let got = decode_body(&body("apps/v1", "ControllerRevision", rev)).unwrap();
    assert_eq!(got["data"], json!({"spec": {"a": 1}}));
    assert_eq!(got["revision"], json!(1));
}

#[test]
fn volumes_and_config_map_references_are_inlined_as_in_json() {
    let volume = Msg::new().str(1, "cfg").msg(
        2,
        Msg::new().msg(19, Msg::new().msg(1, Msg::new().str(1, "settings"))),
    );
    let pod = Msg::new()
        .msg(1, Msg::new().str(1, "p"))
        .msg(2, Msg::new().msg(1, volume));
    let got = decode_body(&body("v1", "Pod", pod)).unwrap();
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "settings"}}])
    );
}

#[test]
fn a_body_without_the_magic_is_refused() {
    let mut b = body("v1", "ConfigMap", Msg::new());
    b[0] = b'{';
    assert_eq!(decode_body(&b), Err(ProtobufError::BadMagic));
    assert_eq!(decode_body(b"k8s"), Err(ProtobufError::BadMagic));
}

#[test]
fn a_truncated_body_is_refused_and_the_error_says_where() {
    let cm = Msg::new()
        .msg(1, meta("settings"))
        .entry(2, "color", b"blue");
    let b = body("v1", "ConfigMap", cm);
    let err = decode_body(&b[..b.len() - 10]).unwrap_err();
    assert!(matches!(err, ProtobufError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let spec = Msg::new().str(1, "three");
    let err = decode_body(&body("apps/v1", "Deployment", Msg::new().msg(2, spec))).unwrap_err();
    assert!(err.to_string().contains("at spec.replicas"), "{err}");
}

#[test]
fn a_kind_that_is_not_built_in_is_refused_with_a_hint_to_send_json() {
    let err = decode_body(&body("example.com/v1", "Widget", Msg::new())).unwrap_err();
    assert!(matches!(err, ProtobufError::UnknownKind { .. }));
    assert!(
        err.to_string().contains("only accepted for built-in kinds"),
        "{err}"
    );
}

#[test]
fn only_the_kubernetes_protobuf_media_type_is_protobuf() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/Vnd.Kubernetes.Protobuf; charset=binary"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf.extra"));
}

#[test]
fn every_built_in_kind_has_a_message() {
    let d = descriptors();
    assert_eq!(
        d.message_of("v1", "ConfigMap"),
        Some("api.core.v1.ConfigMap")
    );
    assert_eq!(
        d.message_of("apps/v1", "Deployment"),
        Some("api.apps.v1.Deployment")
    );
    assert_eq!(
        d.message_of("autoscaling/v1", "HorizontalPodAutoscaler"),
        Some("api.autoscaling.v1.HorizontalPodAutoscaler")
    );
    assert!(is_builtin(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition"
    ));
    let crds = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds")).unwrap();
    let yamls = crds
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    // One message per CRD, plus autoscaling's second version and the review kinds, which
    // are served without a CRD.
    assert_eq!(d.kinds.len(), yamls + 1 + crate::registry::REVIEWS.len());
}

#[test]
fn an_empty_storage_class_name_is_kept_because_it_means_no_class() {
    let spec = Msg::new().str(1, "ReadWriteOnce").str(3, "").str(5, "");
    let got = decode_body(&body(
        "v1",
        "PersistentVolumeClaim",
        Msg::new().msg(2, spec),
    ))
    .unwrap();
    assert_eq!(
        got["spec"],
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": ""})
    );
}

#[test]
fn deeply_nested_messages_are_refused_instead_of_exhausting_the_stack() {
    // JSONSchemaProps.not (28) nested 1,000 times inside a CRD's version schema.
    let mut schema = Msg::new();
    for _ in 0..1_000 {
        schema = Msg::new().msg(28, schema);
    }
    let version = Msg::new().str(1, "v1").msg(4, Msg::new().msg(1, schema));
    let crd = Msg::new().msg(2, Msg::new().msg(7, version));
    let err = decode_body(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .unwrap_err();
    assert!(err.to_string().contains("nest deeper than"), "{err}");
}

#[test]
fn a_crd_schema_decodes_its_unions_and_x_kubernetes_names() {
    let prop = |k: &str, schema: Msg| Msg::new().str(1, k).msg(2, schema);
    let string = Msg::new().str(5, "string");
    let root = Msg::new()
        .str(5, "object")
        .msg(29, prop("spec", Msg::new().str(5, "object").int(38, 1)))
        .msg(
            29,
            prop(
                "tags",
                Msg::new()
                    .str(5, "array")
                    .msg(24, Msg::new().msg(1, string.clone()))
                    .str(42, "set"),
            ),
        )
        .msg(
            29,
            prop(
                "labels",
                Msg::new()
                    .str(5, "object")
                    .msg(30, Msg::new().msg(2, string)),
            ),
        )
        .msg(
            29,
            prop(
                "strict",
                Msg::new().str(5, "object").msg(30, Msg::new().int(1, 0)),
            ),
        )
        .msg(
            29,
            prop(
                "size",
                Msg::new()
                    .str(5, "number")
                    .key(9, 1)
                    .fixed(&2.5f64.to_bits().to_le_bytes()),
            ),
        );
    let version = Msg::new()
        .str(1, "v1")
        .int(2, 1)
        .int(3, 1)
        .msg(4, Msg::new().msg(1, root));
    let names = Msg::new().str(1, "widgets").str(4, "Widget");
    let spec = Msg::new()
        .str(1, "example.com")
        .msg(3, names)
        .str(4, "Namespaced")
        .msg(7, version);
    let crd = Msg::new()
        .msg(1, Msg::new().str(1, "widgets.example.com"))
        .msg(2, spec);
    let got = decode_body(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .unwrap();
    assert_eq!(
        got["spec"]["versions"][0],
        json!({"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "strict": {"type": "object", "additionalProperties": false},
                "size": {"type": "number", "maximum": 2.5},
            },
        }}})
    );
    assert_eq!(
        got["spec"]["names"],
        json!({"plural": "widgets", "kind": "Widget"})
    );
}

#[test]
fn a_lease_renewal_decodes_micro_times_with_six_fractional_digits() {
    let renew = Msg::new().int(1, 1_704_164_645).int(2, 123_456_789);
    let spec = Msg::new()
        .str(1, "node-a")
        .int(2, 40)
        .msg(4, renew)
        .int(5, 0);
    let lease = Msg::new()
        .msg(1, Msg::new().str(1, "node-a").str(6, "812"))
        .msg(2, spec);
    let got = decode_body(&body("coordination.k8s.io/v1", "Lease", lease)).unwrap();
    assert_eq!(
        got["metadata"],
        json!({"name": "node-a", "resourceVersion": "812"})
    );
    assert_eq!(
        got["spec"],
        json!({"holderIdentity": "node-a", "leaseDurationSeconds": 40,
               "renewTime": "2024-01-02T03:04:05.123456Z", "leaseTransitions": 0})
    );
}

#[test]
fn managed_fields_decode_their_time_and_raw_fields_v1_json() {
    let entry = Msg::new()
        .str(1, "kubectl-create")
        .str(2, "Update")
        .str(3, "v1")
        .msg(4, Msg::new().int(1, 1_704_164_645))
        .str(6, "FieldsV1")
        .msg(
            7,
            Msg::new().bytes(1, br#"{"f:data":{".":{},"f:color":{}}}"#),
        );
    let cm = Msg::new().msg(1, Msg::new().str(1, "settings").msg(17, entry));
    let got = decode_body(&body("v1", "ConfigMap", cm)).unwrap();
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:color": {}}}}])
    );
}

#[test]
fn an_old_api_version_of_a_built_in_kind_is_refused() {
    let err = decode_body(&body("extensions/v1beta1", "Deployment", Msg::new())).unwrap_err();
    assert_eq!(
        err,
        ProtobufError::UnknownKind {
            api_version: "extensions/v1beta1".into(),
            kind: "Deployment".into()
        }
    );
}

#[test]
fn delete_options_as_client_go_sends_them_decode() {
    // Go writes the unset propagationPolicy-less fields too: an empty dryRun list is absent.
    let opts = Msg::new()
        .int(1, 0)
        .msg(2, Msg::new().str(1, "uid-1").str(2, ""))
        .str(4, "Background")
        .str(5, "All");
    let got = decode_delete_options(&body("v1", "DeleteOptions", opts)).unwrap();
    assert_eq!(
        got,
        json!({"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1", "resourceVersion": ""}, "propagationPolicy": "Background", "dryRun": ["All"]})
    );
    assert_eq!(
        decode_delete_options(&body("v1", "DeleteOptions", Msg::new())).unwrap(),
        json!({})
    );
    assert_eq!(decode_delete_options(b"{}"), Err(ProtobufError::BadMagic));
}

#[test]
fn self_subject_access_reviews_decode_as_kubectl_auth_can_i_sends_them() {
    // What client-go marshals for `kubectl auth can-i`: every string of the attributes,
    // empty ones too, and a zero status (allowed=false, empty reason and error).
    let attributes = |ns: &str, verb: &str, resource: &str, sub: &str, name: &str| {
        Msg::new()
            .str(1, ns)
            .str(2, verb)
            .str(3, "")
            .str(4, "")
            .str(5, resource)
            .str(6, sub)
            .str(7, name)
    };
    let zero_status = || Msg::new().int(1, 0).str(2, "").str(3, "").int(4, 0);
    let review = |spec: Msg| {
        let raw = Msg::new()
            .msg(1, Msg::new().str(1, "").msg(8, Msg::new()))
            .msg(2, spec)
            .msg(3, zero_status());
        body("authorization.k8s.io/v1", "SelfSubjectAccessReview", raw)
    };
    let cases = [
        (
            "list pods in a namespace",
            review(Msg::new().msg(1, attributes("team-a", "list", "pods", "", ""))),
            json!({"resourceAttributes": {"namespace": "team-a", "verb": "list", "resource": "pods"}}),
        ),
        (
            "get one pod's log",
            review(Msg::new().msg(1, attributes("team-a", "get", "pods", "log", "web"))),
            json!({"resourceAttributes": {"namespace": "team-a", "verb": "get", "resource": "pods", "subresource": "log", "name": "web"}}),
        ),
        (
            "a non-resource URL",
            review(Msg::new().msg(2, Msg::new().str(1, "/version").str(2, "get"))),
            json!({"nonResourceAttributes": {"path": "/version", "verb": "get"}}),
        ),
    ];
    for (name, bytes, spec) in cases {
        let got = decode_body(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got["kind"], "SelfSubjectAccessReview", "{name}");
        assert_eq!(got["spec"], spec, "{name}: {got}");
    }
}

#[test]
fn extra_values_of_reviews_and_csrs_decode_as_plain_string_lists() {
    // map<string, ExtraValue> entry: 1 key, 2 ExtraValue {1 repeated items}.
    let scopes = || {
        Msg::new()
            .str(1, "scopes")
            .msg(2, Msg::new().str(1, "read").str(1, "write"))
    };
    let cases = [
        (
            "SubjectAccessReview spec.extra",
            body(
                "authorization.k8s.io/v1",
                "SubjectAccessReview",
                Msg::new().msg(2, Msg::new().str(3, "jane").msg(5, scopes())),
            ),
        ),
        (
            "CertificateSigningRequest spec.extra",
            body(
                "certificates.k8s.io/v1",
                "CertificateSigningRequest",
                Msg::new().msg(2, Msg::new().str(2, "jane").msg(6, scopes())),
            ),
        ),
    ];
    for (name, bytes) in cases {
        let got = decode_body(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            got.pointer("/spec/extra"),
            Some(&json!({"scopes": ["read", "write"]})),
            "{name}: {got}"
        );
    }
}
