//! Tests against protobuf bodies kubectl really sent (captured from kubectl 1.32 against a stub
//! server), each with the JSON the same command prints with `--dry-run=client -o json`.

use serde_json::{json, Value};

use super::super::decode_body;

/// Asserts `decoded` is `form` (kubectl's JSON for the same object), except that `decoded`
/// may also hold numbers 0 and booleans false where `form` has nothing: Go writes its non-pointer
/// zeros to protobuf, and the proto cannot tell them from a pointer field set to zero.
fn assert_json_form(decoded: &Value, form: &Value, path: &str) {
    match (decoded, form) {
        (Value::Object(d), Value::Object(f)) => {
            for (k, fv) in f {
                let p = format!("{path}.{k}");
                match d.get(k) {
                    None => assert!(fv.is_null(), "{p} missing, JSON form has {fv}"),
                    Some(dv) => assert_json_form(dv, fv, &p),
                }
            }
            for (k, dv) in d.iter().filter(|(k, _)| !f.contains_key(*k)) {
                assert!(
                    dv == &json!(0) || dv == &json!(false),
                    "{path}.{k} = {dv} is not in the JSON form"
                );
            }
        }
        (Value::Array(d), Value::Array(f)) => {
            assert_eq!(d.len(), f.len(), "{path} length");
            for (i, (dv, fv)) in d.iter().zip(f).enumerate() {
                assert_json_form(dv, fv, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(decoded, form, "at {path}"),
    }
}

#[test]
fn bodies_kubectl_create_sent_decode_to_the_json_kubectl_would_have_sent() {
    // Captured from kubectl 1.32 `create configmap|secret|deployment|job|cronjob|service`
    // against a stub server, with the same commands' `--dry-run=client -o json` beside them.
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "configmap",
            include_bytes!("../testdata/kubectl-create-configmap.pb"),
            include_str!("../testdata/kubectl-create-configmap.json"),
        ),
        (
            "secret",
            include_bytes!("../testdata/kubectl-create-secret.pb"),
            include_str!("../testdata/kubectl-create-secret.json"),
        ),
        (
            "deployment",
            include_bytes!("../testdata/kubectl-create-deployment.pb"),
            include_str!("../testdata/kubectl-create-deployment.json"),
        ),
        (
            "job",
            include_bytes!("../testdata/kubectl-create-job.pb"),
            include_str!("../testdata/kubectl-create-job.json"),
        ),
        (
            "cronjob",
            include_bytes!("../testdata/kubectl-create-cronjob.pb"),
            include_str!("../testdata/kubectl-create-cronjob.json"),
        ),
        (
            "service",
            include_bytes!("../testdata/kubectl-create-service.pb"),
            include_str!("../testdata/kubectl-create-service.json"),
        ),
    ];
    for (name, pb, form) in cases {
        let decoded = decode_body(pb).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_json_form(&decoded, &serde_json::from_str(form).unwrap(), name);
    }
}

#[test]
fn a_deployment_from_kubectl_has_no_empty_strings_where_its_json_form_has_none() {
    let d = decode_body(include_bytes!("../testdata/kubectl-create-deployment.pb")).unwrap();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container.get("imagePullPolicy"), None);
    assert_eq!(
        container["ports"],
        json!([{"hostPort": 0, "containerPort": 80}])
    );
    assert_eq!(d["metadata"].get("namespace"), None);
    assert_eq!(d["spec"]["strategy"], json!({}));
}

#[test]
fn every_prefix_and_byte_flip_of_real_bodies_decodes_or_errs_without_panicking() {
    for pb in [
        &include_bytes!("../testdata/kubectl-create-deployment.pb")[..],
        &include_bytes!("../testdata/kubectl-create-service.pb")[..],
    ] {
        for n in 0..pb.len() {
            let _ = decode_body(&pb[..n]);
            for bit in [0x01, 0x80, 0xff] {
                let mut b = pb.to_vec();
                b[n] ^= bit;
                let _ = decode_body(&b);
            }
        }
    }
}
