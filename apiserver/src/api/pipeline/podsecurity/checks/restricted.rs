//! The restricted checks, by id in upstream's order: current pod hardening practice.
//! Three of them replace a baseline check while they apply (restricted volume types
//! include hostPath; drop-ALL capabilities; seccomp must be set, not only valid).

use std::collections::BTreeSet;

use serde_json::Value;

use super::baseline::{valid_seccomp, CAPABILITIES_BASELINE, HOST_PATH_VOLUMES, SECCOMP_BASELINE};
use super::{
    containers, containers_phrase, containers_where, field, list, name, pluralize, setters, str_at,
    windows, Check, Forbidden, Revision,
};

pub(super) const CHECKS: &[Check] = &[
    Check {
        id: "allowPrivilegeEscalation",
        revisions: &[
            Revision {
                min: 8,
                check: allow_privilege_escalation,
                overrides: &[],
            },
            Revision {
                min: 25,
                check: allow_privilege_escalation_1_25,
                overrides: &[],
            },
        ],
    },
    Check {
        id: "capabilities_restricted",
        revisions: &[
            Revision {
                min: 22,
                check: capabilities,
                overrides: &[CAPABILITIES_BASELINE],
            },
            Revision {
                min: 25,
                check: capabilities_1_25,
                overrides: &[CAPABILITIES_BASELINE],
            },
        ],
    },
    Check {
        id: "restrictedVolumes",
        revisions: &[Revision {
            min: 0,
            check: volumes,
            overrides: &[HOST_PATH_VOLUMES],
        }],
    },
    Check {
        id: "runAsNonRoot",
        revisions: &[Revision {
            min: 0,
            check: run_as_non_root,
            overrides: &[],
        }],
    },
    Check {
        id: "runAsUser",
        revisions: &[Revision {
            min: 23,
            check: run_as_user,
            overrides: &[],
        }],
    },
    Check {
        id: "seccompProfile_restricted",
        revisions: &[
            Revision {
                min: 19,
                check: seccomp,
                overrides: &[SECCOMP_BASELINE],
            },
            Revision {
                min: 25,
                check: seccomp_1_25,
                overrides: &[SECCOMP_BASELINE],
            },
        ],
    },
];

fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad = containers_where(spec, |c| {
        field(c, "/securityContext/allowPrivilegeEscalation").and_then(Value::as_bool)
            != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// From v1.25 a Windows pod (`spec.os.name`) is exempt: API validation refuses the
/// Linux-only field on it.
fn allow_privilege_escalation_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if windows(spec) {
        return None;
    }
    allow_privilege_escalation(meta, spec)
}

fn capabilities(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut missing_drop_all = Vec::new();
    let mut adding = Vec::new();
    let mut added = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = field(c, "/securityContext/capabilities") else {
            missing_drop_all.push(name(c).to_string());
            continue;
        };
        if !list(caps.get("drop")).any(|d| d.as_str() == Some("ALL")) {
            missing_drop_all.push(name(c).to_string());
        }
        let mut forbidden = false;
        for cap in list(caps.get("add")) {
            let cap = cap.as_str().unwrap_or("");
            if cap != "NET_BIND_SERVICE" {
                forbidden = true;
                added.insert(cap.to_string());
            }
        }
        if forbidden {
            adding.push(name(c).to_string());
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            super::join_quote(&added)
        ));
    }
    if details.is_empty() {
        return None;
    }
    Forbidden::new("unrestricted capabilities", details.join("; "))
}

fn capabilities_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if windows(spec) {
        return None;
    }
    capabilities(meta, spec)
}

/// Inline volume sources the restricted level allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The other sources, in the order upstream names the first one a volume has (the
/// field name is the name shown).
const NAMED_VOLUMES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn volumes(_: &Value, spec: &Value) -> Option<Forbidden> {
    let has = |v: &Value, source: &str| v.get(source).is_some_and(|s| !s.is_null());
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in list(spec.get("volumes")) {
        if ALLOWED_VOLUMES.iter().any(|s| has(v, s)) {
            continue;
        }
        bad.push(name(v));
        let kind = NAMED_VOLUMES.iter().find(|s| has(v, s));
        types.insert(kind.copied().unwrap_or("unknown"));
    }
    if bad.is_empty() {
        return None;
    }
    Forbidden::new(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            super::join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            super::join_quote(&types)
        ),
    )
}

fn run_as_non_root(_: &Value, spec: &Value) -> Option<Forbidden> {
    let pod_value = field(spec, "/securityContext/runAsNonRoot").and_then(Value::as_bool);
    let pod_bad = pod_value == Some(false);
    let pod_non_root = pod_value == Some(true);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match field(c, "/securityContext/runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c).to_string()),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c).to_string()),
            None => {}
        }
    }
    let who = setters(pod_bad, &explicit);
    if !who.is_empty() {
        return Forbidden::new(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                who.join(" and ")
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    Forbidden::new(
        "runAsNonRoot != true",
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicit)
        ),
    )
}

fn run_as_user(_: &Value, spec: &Value) -> Option<Forbidden> {
    let root = |v: &Value, pointer: &str| field(v, pointer).and_then(Value::as_i64) == Some(0);
    let pod = root(spec, "/securityContext/runAsUser");
    let bad = containers_where(spec, |c| root(c, "/securityContext/runAsUser"));
    let who = setters(pod, &bad);
    if who.is_empty() {
        return None;
    }
    Forbidden::new(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", who.join(" and ")),
    )
}

fn seccomp(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    let mut pod_set = false;
    if let Some(p) = field(spec, "/securityContext/seccompProfile") {
        if valid_seccomp(p) {
            pod_set = true;
        } else {
            pod_bad = true;
            bad_values.insert(str_at(p, "/type").to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match field(c, "/securityContext/seccompProfile") {
            Some(p) if !valid_seccomp(p) => {
                explicit.push(name(c).to_string());
                bad_values.insert(str_at(p, "/type").to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c).to_string()),
            None => {}
        }
    }
    let who = setters(pod_bad, &explicit);
    if !who.is_empty() {
        return Forbidden::new(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                who.join(" and "),
                super::join_quote(&bad_values)
            ),
        );
    }
    if implicit.is_empty() {
        return None;
    }
    Forbidden::new(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    )
}

fn seccomp_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if windows(spec) {
        return None;
    }
    seccomp(meta, spec)
}
