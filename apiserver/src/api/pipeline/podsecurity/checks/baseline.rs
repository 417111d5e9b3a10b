//! The baseline checks, by id in upstream's (byte) order: known privilege escalations
//! are refused, defaults are allowed.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    containers, containers_phrase, containers_where, field, go_quote, is_true, join_quote, list,
    name, pluralize, setters, sorted, str_at, Check, Forbidden, Revision,
};

pub(super) const CAPABILITIES_BASELINE: &str = "capabilities_baseline";
pub(super) const HOST_PATH_VOLUMES: &str = "hostPathVolumes";
pub(super) const SECCOMP_BASELINE: &str = "seccompProfile_baseline";

const fn one(check: super::CheckFn) -> [Revision; 1] {
    [Revision {
        min: 0,
        check,
        overrides: &[],
    }]
}

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "appArmorProfile",
        revisions: &one(app_armor_profile),
    },
    Check {
        id: CAPABILITIES_BASELINE,
        revisions: &one(capabilities),
    },
    Check {
        id: "hostNamespaces",
        revisions: &one(host_namespaces),
    },
    Check {
        id: HOST_PATH_VOLUMES,
        revisions: &one(host_path_volumes),
    },
    Check {
        id: "hostPorts",
        revisions: &one(host_ports),
    },
    Check {
        id: "privileged",
        revisions: &one(privileged),
    },
    Check {
        id: "procMount",
        revisions: &one(proc_mount),
    },
    Check {
        id: "seLinuxOptions",
        revisions: &[
            Revision {
                min: 0,
                check: se_linux_options_1_0,
                overrides: &[],
            },
            Revision {
                min: 31,
                check: se_linux_options_1_31,
                overrides: &[],
            },
        ],
    },
    Check {
        id: SECCOMP_BASELINE,
        revisions: &[
            Revision {
                min: 0,
                check: seccomp_annotations,
                overrides: &[],
            },
            Revision {
                min: 19,
                check: seccomp_fields,
                overrides: &[],
            },
        ],
    },
    Check {
        id: "sysctls",
        revisions: &[
            Revision {
                min: 0,
                check: sysctls_1_0,
                overrides: &[],
            },
            Revision {
                min: 27,
                check: sysctls_1_27,
                overrides: &[],
            },
            Revision {
                min: 29,
                check: sysctls_1_29,
                overrides: &[],
            },
            Revision {
                min: 32,
                check: sysctls_1_32,
                overrides: &[],
            },
        ],
    },
    Check {
        id: "windowsHostProcess",
        revisions: &one(windows_host_process),
    },
];

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Forbidden> {
    let allowed_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut bad_values = BTreeSet::new();
    let pod = match field(spec, "/securityContext/appArmorProfile") {
        Some(p) if !allowed_type(str_at(p, "/type")) => {
            bad_values.insert(str_at(p, "/type").to_string());
            true
        }
        _ => false,
    };
    let bad_containers = containers_where(spec, |c| {
        match field(c, "/securityContext/appArmorProfile") {
            Some(p) if !allowed_type(str_at(p, "/type")) => {
                bad_values.insert(str_at(p, "/type").to_string());
                true
            }
            _ => false,
        }
    });
    let annotations = field(meta, "/annotations").and_then(Value::as_object);
    let bad_annotations = sorted(annotations.into_iter().flatten().filter_map(|(k, v)| {
        let v = v.as_str().unwrap_or("");
        let allowed = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
        (k.starts_with(APPARMOR_ANNOTATION_PREFIX) && !allowed)
            .then(|| format!("{k}={}", go_quote(v)))
    }));
    let mut who = setters(pod, &bad_containers);
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !bad_annotations.is_empty() {
        who.push(pluralize("annotation", "annotations", bad_annotations.len()).to_string());
        values.extend(bad_annotations);
    }
    if who.is_empty() {
        return None;
    }
    Forbidden::new(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            who.join(" and "),
            join_quote(&values)
        ),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut added = BTreeSet::new();
    let bad = containers_where(spec, |c| {
        let mut valid = true;
        for cap in list(field(c, "/securityContext/capabilities/add")) {
            let cap = cap.as_str().unwrap_or("");
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                added.insert(cap.to_string());
            }
        }
        !valid
    });
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&added)
        ),
    )
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<Forbidden> {
    let shared: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(f, _)| is_true(spec, &format!("/{f}")))
    .map(|(_, shown)| shown)
    .collect();
    if shared.is_empty() {
        return None;
    }
    Forbidden::new("host namespaces", shared.join(", "))
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<Forbidden> {
    let volumes: Vec<&str> = list(spec.get("volumes"))
        .filter(|v| field(v, "/hostPath").is_some())
        .map(name)
        .collect();
    if volumes.is_empty() {
        return None;
    }
    Forbidden::new(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", volumes.len()),
            join_quote(&volumes)
        ),
    )
}

fn host_ports(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut ports = BTreeSet::new();
    let bad = containers_where(spec, |c| {
        let mut valid = true;
        for p in list(c.get("ports")) {
            let port = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if port != 0 {
                valid = false;
                ports.insert(port.to_string());
            }
        }
        !valid
    });
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    Forbidden::new(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad = containers_where(spec, |c| is_true(c, "/securityContext/privileged"));
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut types = BTreeSet::new();
    let bad = containers_where(spec, |c| match field(c, "/securityContext/procMount") {
        Some(t) if t.as_str() != Some("Default") => {
            types.insert(t.as_str().unwrap_or("").to_string());
            true
        }
        _ => false,
    });
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_1_0(meta: &Value, spec: &Value) -> Option<Forbidden> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(meta: &Value, spec: &Value) -> Option<Forbidden> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_31)
}

fn se_linux_options(_: &Value, spec: &Value, allowed: &[&str]) -> Option<Forbidden> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = str_at(opts, "/type");
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !str_at(opts, "/user").is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_at(opts, "/role").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod = field(spec, "/securityContext/seLinuxOptions").is_some_and(|o| !valid(o));
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if field(c, "/securityContext/seLinuxOptions").is_some_and(|o| !valid(o)) {
            bad_containers.push(name(c).to_string());
        }
    }
    let who = setters(pod, &bad_containers);
    if who.is_empty() {
        return None;
    }
    let mut what = Vec::new();
    if !bad_types.is_empty() {
        what.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        what.push("user may not be set".to_string());
    }
    if set_role {
        what.push("role may not be set".to_string());
    }
    Forbidden::new(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            who.join(" and "),
            what.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Before v1.19 seccomp was set by alpha annotations.
fn seccomp_annotations(meta: &Value, spec: &Value) -> Option<Forbidden> {
    let annotation = |key: &str| {
        field(meta, "/annotations")
            .and_then(|a| a.get(key))
            .map(|v| v.as_str().unwrap_or(""))
    };
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let mut forbidden = BTreeSet::new();
    if let Some(v) = annotation(SECCOMP_POD_ANNOTATION).filter(|v| !valid(v)) {
        forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
    }
    for c in containers(spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
        if let Some(v) = annotation(&key).filter(|v| !valid(v)) {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    Forbidden::new(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.join(", ")
        ),
    )
}

pub(super) fn valid_seccomp(profile: &Value) -> bool {
    matches!(str_at(profile, "/type"), "Localhost" | "RuntimeDefault")
}

/// From v1.19: `securityContext.seccompProfile`, if set, is RuntimeDefault or Localhost.
fn seccomp_fields(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad_values = BTreeSet::new();
    let mut bad = |p: &Value| {
        let invalid = !valid_seccomp(p);
        if invalid {
            bad_values.insert(str_at(p, "/type").to_string());
        }
        invalid
    };
    let pod = field(spec, "/securityContext/seccompProfile").is_some_and(&mut bad);
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if field(c, "/securityContext/seccompProfile").is_some_and(&mut bad) {
            bad_containers.push(name(c).to_string());
        }
    }
    let who = setters(pod, &bad_containers);
    if who.is_empty() {
        return None;
    }
    Forbidden::new(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            who.join(" and "),
            join_quote(&bad_values)
        ),
    )
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(meta: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(meta, spec, &[SYSCTLS_1_0])
}

fn sysctls_1_27(meta: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(meta, spec, &[SYSCTLS_1_0, SYSCTLS_1_27])
}

fn sysctls_1_29(meta: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(meta, spec, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}

fn sysctls_1_32(meta: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(
        meta,
        spec,
        &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32],
    )
}

/// Only the namespaced, isolated ("safe") sysctls of the version; the others are named
/// in the order the pod lists them.
fn sysctls(_: &Value, spec: &Value, allowed: &[&[&str]]) -> Option<Forbidden> {
    let forbidden: Vec<&str> = list(field(spec, "/securityContext/sysctls"))
        .map(name)
        .filter(|s| !allowed.iter().any(|set| set.contains(s)))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    Forbidden::new("forbidden sysctls", forbidden.join(", "))
}

fn windows_host_process(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad = containers_where(spec, |c| {
        is_true(c, "/securityContext/windowsOptions/hostProcess")
    });
    let pod = is_true(spec, "/securityContext/windowsOptions/hostProcess");
    let who = setters(pod, &bad);
    if who.is_empty() {
        return None;
    }
    Forbidden::new(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            who.join(" and ")
        ),
    )
}
