//! Every check as a named row: a fixture pod, the level and version it is evaluated at,
//! and upstream's message (`ForbiddenDetail`), or "" when the pod is allowed.

use serde_json::{json, Value};

use super::super::policy::{Level, LevelVersion, Version};
use super::*;

/// A pod with one container `c` and nothing set: what baseline allows.
fn pod() -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// `pod()` with what the restricted level asks for.
fn restricted_pod() -> Value {
    pod()
        .with("/spec/securityContext/runAsNonRoot", json!(true))
        .with(
            "/spec/securityContext/seccompProfile",
            json!({"type": "RuntimeDefault"}),
        )
        .with(
            "/spec/containers/0/securityContext",
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
        )
}

trait With {
    fn with(self, pointer: &str, value: Value) -> Self;
}

impl With for Value {
    /// The object with `value` at `pointer`, creating the objects on the way.
    fn with(mut self, pointer: &str, value: Value) -> Self {
        let mut at = &mut self;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i == parts.len() - 1;
            at = match at {
                Value::Array(items) => &mut items[part.parse::<usize>().expect("index")],
                Value::Object(map) => map.entry(part.to_string()).or_insert(json!({})),
                other => panic!("cannot descend into {other}"),
            };
            if last {
                *at = value;
                break;
            }
        }
        self
    }
}

fn at(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

const BASELINE: LevelVersion = LevelVersion {
    level: Level::Baseline,
    version: Version::Latest,
};
const RESTRICTED: LevelVersion = LevelVersion {
    level: Level::Restricted,
    version: Version::Latest,
};

struct Row {
    name: &'static str,
    at: LevelVersion,
    pod: Value,
    want: &'static str,
}

fn rows() -> Vec<Row> {
    let two_containers = |sc: Value| {
        pod().with(
            "/spec/containers",
            json!([{"name": "a", "securityContext": sc}, {"name": "b", "securityContext": sc}]),
        )
    };
    vec![
        Row {
            name: "a pod with nothing set is baseline",
            at: BASELINE,
            pod: pod(),
            want: "",
        },
        Row {
            name: "privileged allows everything",
            at: at(Level::Privileged, Version::Latest),
            pod: pod()
                .with("/spec/containers/0/securityContext/privileged", json!(true))
                .with("/spec/hostNetwork", json!(true)),
            want: "",
        },
        Row {
            name: "a privileged container",
            at: BASELINE,
            pod: pod().with("/spec/containers/0/securityContext/privileged", json!(true)),
            want: r#"privileged (container "c" must not set securityContext.privileged=true)"#,
        },
        Row {
            name: "privileged init and ephemeral containers are named in visiting order",
            at: BASELINE,
            pod: pod()
                .with(
                    "/spec/initContainers",
                    json!([{"name": "i", "securityContext": {"privileged": true}}]),
                )
                .with(
                    "/spec/ephemeralContainers",
                    json!([{"name": "e", "securityContext": {"privileged": true}}]),
                )
                .with("/spec/containers/0/securityContext/privileged", json!(true)),
            want: r#"privileged (containers "i", "c", "e" must not set securityContext.privileged=true)"#,
        },
        Row {
            name: "host namespaces",
            at: BASELINE,
            pod: pod()
                .with("/spec/hostNetwork", json!(true))
                .with("/spec/hostPID", json!(true))
                .with("/spec/hostIPC", json!(true)),
            want: "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)",
        },
        Row {
            name: "windows host process on the pod and a container",
            at: BASELINE,
            pod: pod()
                .with(
                    "/spec/securityContext/windowsOptions/hostProcess",
                    json!(true),
                )
                .with(
                    "/spec/containers/0/securityContext/windowsOptions/hostProcess",
                    json!(true),
                ),
            want: r#"hostProcess (pod and container "c" must not set securityContext.windowsOptions.hostProcess=true)"#,
        },
        Row {
            name: "capabilities beyond the default set",
            at: BASELINE,
            pod: two_containers(json!({"capabilities": {"add": ["SYS_ADMIN", "NET_RAW", "CHOWN"]}})),
            want: r#"non-default capabilities (containers "a", "b" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add)"#,
        },
        Row {
            name: "default capabilities may be added",
            at: BASELINE,
            pod: pod().with(
                "/spec/containers/0/securityContext/capabilities/add",
                json!(["CHOWN", "NET_BIND_SERVICE"]),
            ),
            want: "",
        },
        Row {
            name: "hostPath volumes",
            at: BASELINE,
            pod: pod().with(
                "/spec/volumes",
                json!([{"name": "root", "hostPath": {"path": "/"}}, {"name": "tmp", "emptyDir": {}}]),
            ),
            want: r#"hostPath volumes (volume "root")"#,
        },
        Row {
            name: "host ports",
            at: BASELINE,
            pod: pod().with(
                "/spec/containers/0/ports",
                json!([{"containerPort": 80, "hostPort": 9090}, {"containerPort": 81, "hostPort": 10000}, {"containerPort": 82}]),
            ),
            want: r#"hostPort (container "c" uses hostPorts 10000, 9090)"#,
        },
        Row {
            name: "AppArmor unconfined by field and by annotation",
            at: BASELINE,
            pod: pod()
                .with(
                    "/spec/securityContext/appArmorProfile",
                    json!({"type": "Unconfined"}),
                )
                .with(
                    "/metadata/annotations",
                    json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}),
                ),
            want: r#"forbidden AppArmor profiles (pod and annotation must not set AppArmor profile type to "Unconfined", "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#,
        },
        Row {
            name: "AppArmor runtime default and localhost profiles are allowed",
            at: BASELINE,
            pod: pod()
                .with(
                    "/spec/containers/0/securityContext/appArmorProfile",
                    json!({"type": "Localhost", "localhostProfile": "p"}),
                )
                .with(
                    "/metadata/annotations",
                    json!({"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}),
                ),
            want: "",
        },
        Row {
            name: "SELinux type and user",
            at: BASELINE,
            pod: pod().with(
                "/spec/containers/0/securityContext/seLinuxOptions",
                json!({"type": "spc_t", "user": "root"}),
            ),
            want: r#"seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)"#,
        },
        Row {
            name: "SELinux container_engine_t is allowed from v1.31",
            at: BASELINE,
            pod: pod().with(
                "/spec/securityContext/seLinuxOptions",
                json!({"type": "container_engine_t"}),
            ),
            want: "",
        },
        Row {
            name: "SELinux container_engine_t is refused before v1.31",
            at: at(Level::Baseline, Version::Minor(30)),
            pod: pod().with(
                "/spec/securityContext/seLinuxOptions",
                json!({"type": "container_engine_t", "role": "r"}),
            ),
            want: r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "container_engine_t"; role may not be set)"#,
        },
        Row {
            name: "an unmasked /proc mount",
            at: BASELINE,
            pod: pod().with(
                "/spec/containers/0/securityContext/procMount",
                json!("Unmasked"),
            ),
            want: r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
        },
        Row {
            name: "an unconfined seccomp profile",
            at: BASELINE,
            pod: pod().with(
                "/spec/securityContext/seccompProfile",
                json!({"type": "Unconfined"}),
            ),
            want: r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
        },
        Row {
            name: "seccomp annotations before v1.19",
            at: at(Level::Baseline, Version::Minor(18)),
            pod: pod().with(
                "/metadata/annotations",
                json!({
                    "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
                    "container.seccomp.security.alpha.kubernetes.io/c": "runtime/default",
                }),
            ),
            want: r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#,
        },
        Row {
            name: "unsafe sysctls in the order given",
            at: BASELINE,
            pod: pod().with(
                "/spec/securityContext/sysctls",
                json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1"}, {"name": "kernel.core_pattern", "value": "x"}]),
            ),
            want: "forbidden sysctls (kernel.msgmax, kernel.core_pattern)",
        },
        Row {
            name: "net.ipv4.tcp_rmem is only safe from v1.32",
            at: at(Level::Baseline, Version::Minor(31)),
            pod: pod().with(
                "/spec/securityContext/sysctls",
                json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]),
            ),
            want: "forbidden sysctls (net.ipv4.tcp_rmem)",
        },
        Row {
            name: "a pod with nothing set is not restricted",
            at: RESTRICTED,
            pod: pod(),
            want: concat!(
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            ),
        },
        Row {
            name: "the restricted fixture is restricted",
            at: RESTRICTED,
            pod: restricted_pod(),
            want: "",
        },
        Row {
            name: "baseline violations come first in a restricted refusal",
            at: RESTRICTED,
            pod: restricted_pod()
                .with("/spec/containers/0/securityContext/privileged", json!(true))
                .with(
                    "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                    json!(true),
                ),
            want: r#"privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
        },
        Row {
            name: "restricted volume types replace the hostPath check",
            at: RESTRICTED,
            pod: restricted_pod().with(
                "/spec/volumes",
                json!([
                    {"name": "root", "hostPath": {"path": "/"}},
                    {"name": "share", "nfs": {"server": "s", "path": "/"}},
                    {"name": "cfg", "configMap": {"name": "x"}},
                    {"name": "token", "projected": {"sources": []}},
                ]),
            ),
            want: r#"restricted volume types (volumes "root", "share" use restricted volume types "hostPath", "nfs")"#,
        },
        Row {
            name: "restricted capabilities replace the baseline ones",
            at: RESTRICTED,
            pod: restricted_pod().with(
                "/spec/containers/0/securityContext/capabilities/add",
                json!(["SYS_ADMIN", "NET_BIND_SERVICE"]),
            ),
            want: r#"unrestricted capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
        },
        Row {
            name: "before v1.22 restricted checks capabilities as baseline does",
            at: at(Level::Restricted, Version::Minor(21)),
            pod: restricted_pod().with(
                "/spec/containers/0/securityContext/capabilities",
                json!({"add": ["SYS_ADMIN"]}),
            ),
            want: r#"non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
        },
        Row {
            name: "a container setting runAsNonRoot=false",
            at: RESTRICTED,
            pod: restricted_pod().with(
                "/spec/containers/0/securityContext/runAsNonRoot",
                json!(false),
            ),
            want: r#"runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)"#,
        },
        Row {
            name: "running as user 0",
            at: RESTRICTED,
            pod: restricted_pod()
                .with("/spec/securityContext/runAsUser", json!(0))
                .with("/spec/containers/0/securityContext/runAsUser", json!(0)),
            want: r#"runAsUser=0 (pod and container "c" must not set runAsUser=0)"#,
        },
        Row {
            name: "runAsUser=0 is only checked from v1.23",
            at: at(Level::Restricted, Version::Minor(22)),
            pod: restricted_pod().with("/spec/securityContext/runAsUser", json!(0)),
            want: "",
        },
        Row {
            name: "a container with an unconfined seccomp profile",
            at: RESTRICTED,
            pod: restricted_pod().with(
                "/spec/containers/0/securityContext/seccompProfile",
                json!({"type": "Unconfined"}),
            ),
            want: r#"seccompProfile (container "c" must not set securityContext.seccompProfile.type to "Unconfined")"#,
        },
        Row {
            name: "a Windows pod needs no Linux-only fields from v1.25",
            at: RESTRICTED,
            pod: pod()
                .with("/spec/os/name", json!("windows"))
                .with("/spec/securityContext/runAsNonRoot", json!(true)),
            want: "",
        },
        Row {
            name: "a Windows pod before v1.25 is held to the Linux fields",
            at: at(Level::Restricted, Version::Minor(24)),
            pod: pod()
                .with("/spec/os/name", json!("windows"))
                .with("/spec/securityContext/runAsNonRoot", json!(true)),
            want: concat!(
                r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            ),
        },
        Row {
            name: "a future version evaluates as the newest one",
            at: at(Level::Baseline, Version::Minor(99)),
            pod: pod().with(
                "/spec/securityContext/sysctls",
                json!([{"name": "net.ipv4.tcp_wmem", "value": "1"}]),
            ),
            want: "",
        },
    ]
}

#[test]
fn every_check_gives_upstreams_message() {
    for row in rows() {
        let meta = row.pod.get("metadata").unwrap_or(&Value::Null);
        let spec = &row.pod["spec"];
        let got = forbidden_detail(&evaluate(row.at, meta, spec));
        assert_eq!(got, row.want, "{}", row.name);
    }
}

#[test]
fn check_ids_are_in_upstreams_byte_order() {
    for checks in [baseline::CHECKS, restricted::CHECKS] {
        let ids: Vec<&str> = checks.iter().map(|c| c.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}

#[test]
fn a_namespace_summary_names_only_the_reasons() {
    let pod = pod()
        .with("/spec/containers/0/securityContext/privileged", json!(true))
        .with("/spec/hostPID", json!(true));
    let results = evaluate(BASELINE, &Value::Null, &pod["spec"]);
    assert_eq!(forbidden_reason(&results), "host namespaces, privileged");
}

#[test]
fn go_quoting_escapes_quotes_and_control_characters() {
    assert_eq!(go_quote("a\"b\\c\u{1}"), r#""a\"b\\c\x01""#);
}
