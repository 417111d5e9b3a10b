//! PodSecurity admission as kubectl users meet it: namespace labels enforce (403 with
//! upstream's message), warn (`Warning:` lines for pods and for workload templates),
//! and a stricter enforce level warns about the pods already running.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::{json, Value};

use crate::common::Cluster;

/// `kubectl ARGS` in the test's namespace with `stdin` as its input (a manifest for
/// `-f -`).
pub(crate) fn kubectl_with(c: &Cluster, args: &[&str], stdin: &Value) -> Output {
    let mut child = c
        .kubectl_in_namespace()
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.to_string().as_bytes())
        .expect("writing the manifest");
    child.wait_with_output().expect("waiting for kubectl")
}

/// A kubectl run's stdout and stderr.
pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn label(c: &Cluster, label: &str) -> Output {
    c.kubectl_output(&["label", "namespace", &c.ns, label, "--overwrite"])
}

/// A pod with one container `c` and nothing set.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

fn privileged_pod(name: &str) -> Value {
    let mut p = pod(name);
    p["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    p
}

/// What the restricted level asks of a pod.
fn restricted_pod(name: &str) -> Value {
    let mut p = pod(name);
    p["spec"]["securityContext"] =
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    p["spec"]["containers"][0]["securityContext"] =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    p
}

const RESTRICTED_VIOLATIONS_OF_A_PRIVILEGED_POD: &str = concat!(
    r#"privileged (container "c" must not set securityContext.privileged=true), "#,
    r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);

// kubectl blocks this thread while the in-process server answers it from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_namespace_refuses_a_privileged_pod_with_upstreams_message_and_accepts_a_compliant_one(
) {
    let c = Cluster::builder("psa-enforce").start().await;
    let out = label(&c, "pod-security.kubernetes.io/enforce=restricted");
    assert!(out.status.success(), "{:?}", text(&out));

    let out = kubectl_with(&c, &["create", "-f", "-"], &privileged_pod("priv"));
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "a privileged pod was created");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "Error from server (Forbidden): error when creating \"STDIN\": pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": {RESTRICTED_VIOLATIONS_OF_A_PRIVILEGED_POD}"
        )
    );

    let out = kubectl_with(&c, &["create", "-f", "-"], &restricted_pod("ok"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), "pod/ok created");
    assert!(!stderr.contains("Warning"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warn_namespace_admits_a_violating_pod_with_upstreams_warning() {
    let c = Cluster::builder("psa-warn").start().await;
    let out = label(&c, "pod-security.kubernetes.io/warn=baseline");
    assert!(out.status.success(), "{:?}", text(&out));

    let mut host = pod("host");
    host["spec"]["hostNetwork"] = json!(true);
    let out = kubectl_with(&c, &["create", "-f", "-"], &host);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), "pod/host created");
    assert_eq!(
        stderr.trim_end(),
        r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_in_a_warn_namespace_gets_the_workload_warning() {
    let c = Cluster::builder("psa-workload").start().await;
    let out = label(&c, "pod-security.kubernetes.io/warn=restricted");
    assert!(out.status.success(), "{:?}", text(&out));

    let out = c.kubectl_output(&["create", "deployment", "web", "--image=busybox"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), "deployment.apps/web created");
    assert_eq!(
        stderr.trim_end(),
        concat!(
            r#"Warning: would violate PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "busybox" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "busybox" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "busybox" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "busybox" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelling_a_namespace_restricted_warns_about_the_pods_already_in_it() {
    let c = Cluster::builder("psa-existing").start().await;
    for p in [privileged_pod("priv"), restricted_pod("ok")] {
        let out = kubectl_with(&c, &["create", "-f", "-"], &p);
        assert!(out.status.success(), "{:?}", text(&out));
    }

    let out = label(&c, "pod-security.kubernetes.io/enforce=restricted");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim_end(), "namespace/psa-existing labeled");
    assert_eq!(
        stderr.trim_end(),
        concat!(
            "Warning: existing pods in namespace \"psa-existing\" violate the new PodSecurity enforce level \"restricted:latest\"\n",
            "Warning: priv: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        )
    );

    // As upstream, relaxing the level at the same version checks nothing; a new version
    // checks again.
    let out = label(&c, "pod-security.kubernetes.io/enforce=baseline");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).1, "");
    let out = label(&c, "pod-security.kubernetes.io/enforce-version=v1.30");
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        text(&out).1.trim_end(),
        concat!(
            "Warning: existing pods in namespace \"psa-existing\" violate the new PodSecurity enforce level \"baseline:v1.30\"\n",
            "Warning: priv: privileged"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_pod_security_label_is_refused_as_upstream_does() {
    let c = Cluster::builder("psa-invalid").start().await;
    let rows = [
        (
            "an unknown level",
            "pod-security.kubernetes.io/enforce=strict",
            r#"The Namespace "psa-invalid" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
        ),
        (
            "a version that is not v1.x",
            "pod-security.kubernetes.io/warn-version=1.30",
            r#"The Namespace "psa-invalid" is invalid: metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x""#,
        ),
    ];
    for (name, label_value, want) in rows {
        let out = label(&c, label_value);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{name}: the label was accepted");
        assert_eq!(stderr.trim_end(), want, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_violating_a_new_enforce_level_takes_label_changes_but_not_image_changes() {
    let c = Cluster::builder("psa-update").start().await;
    let out = kubectl_with(&c, &["create", "-f", "-"], &privileged_pod("priv"));
    assert!(out.status.success(), "{:?}", text(&out));
    let out = label(&c, "pod-security.kubernetes.io/enforce=baseline");
    assert!(out.status.success(), "{:?}", text(&out));

    let out = c.kubectl_output(&["label", "pod", "priv", "team=a"]);
    assert!(out.status.success(), "{:?}", text(&out));

    let out = c.kubectl_output(&["set", "image", "pod/priv", "c=busybox:2"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "the image change was accepted");
    assert!(
        stderr.contains(r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{stderr}"
    );
}
