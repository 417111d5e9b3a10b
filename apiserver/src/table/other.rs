//! Printers for the remaining built-in kinds (coordination, rbac, networking, storage, policy, autoscaling,
//! discovery, scheduling, certificates, apiextensions) and the Name/Age default.

use serde_json::{json, Value};

use super::{
    age, age_col, arr, c, format_label_selector, format_rfc3339, get, int, name, name_col,
    parse_rfc3339, s, wide, CellFn, ColumnDef,
};

/// Upstream's default table convertor (kinds without a printer): NAME and CREATED AT.
fn created_at() -> (Vec<ColumnDef>, CellFn) {
    (
        vec![
            name_col(),
            c("Created At", "date", "Time the object was created."),
        ],
        created_at_cells,
    )
}

fn created_at_cells(obj: &Value, _now: i64) -> Vec<Value> {
    let created = s(obj, &["metadata", "creationTimestamp"]);
    let cell = match parse_rfc3339(created) {
        Some(t) => json!(format_rfc3339(t)),
        None => Value::Null,
    };
    vec![name(obj), cell]
}

pub(super) fn printer(group: &str, resource: &str) -> Option<(Vec<ColumnDef>, CellFn)> {
    Some(match (group, resource) {
        ("coordination.k8s.io", "leases") => (
            vec![
                name_col(),
                c("Holder", "string", "Current holder of the lease."),
                age_col(),
            ],
            lease_cells as CellFn,
        ),
        ("apiextensions.k8s.io", "customresourcedefinitions")
        | ("rbac.authorization.k8s.io", "roles")
        | ("rbac.authorization.k8s.io", "clusterroles")
        | ("apiregistration.k8s.io", "apiservices") => created_at(),
        ("rbac.authorization.k8s.io", "rolebindings")
        | ("rbac.authorization.k8s.io", "clusterrolebindings") => (
            vec![
                name_col(),
                c("Role", "string", "Referenced role as Kind/name."),
                age_col(),
                wide("Users", "string", "Bound users."),
                wide("Groups", "string", "Bound groups."),
                wide("ServiceAccounts", "string", "Bound service accounts."),
            ],
            binding_cells,
        ),
        ("scheduling.k8s.io", "priorityclasses") => (
            vec![
                name_col(),
                c("Value", "integer", "Priority value."),
                c(
                    "Global-Default",
                    "boolean",
                    "Whether this is the default class.",
                ),
                age_col(),
                wide("PreemptionPolicy", "string", "Preemption policy."),
            ],
            priorityclass_cells,
        ),
        ("storage.k8s.io", "storageclasses") => (
            vec![
                name_col(),
                c("Provisioner", "string", "Volume provisioner."),
                c(
                    "ReclaimPolicy",
                    "string",
                    "Reclaim policy of provisioned volumes.",
                ),
                c("VolumeBindingMode", "string", "When volumes are bound."),
                c(
                    "AllowVolumeExpansion",
                    "string",
                    "Whether volumes may grow.",
                ),
                age_col(),
            ],
            storageclass_cells,
        ),
        ("networking.k8s.io", "ingresses") => (
            vec![
                name_col(),
                c("Class", "string", "Ingress class name."),
                c("Hosts", "string", "Hosts matched by the rules."),
                c("Address", "string", "Load balancer addresses."),
                c("Ports", "string", "Ports served."),
                age_col(),
            ],
            ingress_cells,
        ),
        ("networking.k8s.io", "ingressclasses") => (
            vec![
                name_col(),
                c("Controller", "string", "Controller implementing the class."),
                c("Parameters", "string", "Parameters reference."),
                age_col(),
            ],
            ingressclass_cells,
        ),
        ("networking.k8s.io", "networkpolicies") => (
            vec![
                name_col(),
                c("Pod-Selector", "string", "Pods the policy applies to."),
                age_col(),
            ],
            networkpolicy_cells,
        ),
        ("autoscaling", "horizontalpodautoscalers") => (
            vec![
                name_col(),
                c("Reference", "string", "Scale target as Kind/name."),
                c("Targets", "string", "Current and target metric values."),
                c("MinPods", "string", "Lower replica bound."),
                c("MaxPods", "string", "Upper replica bound."),
                c("Replicas", "string", "Current replicas."),
                age_col(),
            ],
            hpa_cells,
        ),
        ("policy", "poddisruptionbudgets") => (
            vec![
                name_col(),
                c("Min Available", "string", "Pods that must stay available."),
                c("Max Unavailable", "string", "Pods that may be unavailable."),
                c(
                    "Allowed Disruptions",
                    "integer",
                    "Disruptions currently allowed.",
                ),
                age_col(),
            ],
            pdb_cells,
        ),
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                name_col(),
                c("AddressType", "string", "Address family."),
                c("Ports", "string", "Ports of the slice."),
                c("Endpoints", "string", "Endpoint addresses."),
                age_col(),
            ],
            endpointslice_cells,
        ),
        ("node.k8s.io", "runtimeclasses") => (
            vec![
                name_col(),
                c("Handler", "string", "Runtime handler."),
                age_col(),
            ],
            runtimeclass_cells,
        ),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
        | ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => (
            vec![
                name_col(),
                c("Webhooks", "integer", "Number of webhooks."),
                age_col(),
            ],
            webhook_cells,
        ),
        ("certificates.k8s.io", "certificatesigningrequests") => (
            vec![
                name_col(),
                age_col(),
                c("SignerName", "string", "Requested signer."),
                c("Requestor", "string", "User that created the request."),
                c(
                    "RequestedDuration",
                    "string",
                    "Requested certificate lifetime.",
                ),
                c("Condition", "string", "Approval state."),
            ],
            csr_cells,
        ),
        _ => return None,
    })
}

fn lease_cells(l: &Value, now: i64) -> Vec<Value> {
    vec![
        name(l),
        json!(s(l, &["spec", "holderIdentity"])),
        age(l, now),
    ]
}

fn binding_cells(b: &Value, now: i64) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut sas = Vec::new();
    for sub in arr(b, &["subjects"]) {
        match s(sub, &["kind"]) {
            "User" => users.push(s(sub, &["name"]).to_string()),
            "Group" => groups.push(s(sub, &["name"]).to_string()),
            "ServiceAccount" => {
                sas.push(format!("{}/{}", s(sub, &["namespace"]), s(sub, &["name"])))
            }
            _ => {}
        }
    }
    vec![
        name(b),
        json!(format!(
            "{}/{}",
            s(b, &["roleRef", "kind"]),
            s(b, &["roleRef", "name"])
        )),
        age(b, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

fn priorityclass_cells(pc: &Value, now: i64) -> Vec<Value> {
    vec![
        name(pc),
        json!(int(pc, &["value"])),
        json!(get(pc, &["globalDefault"])
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        age(pc, now),
        json!(s(pc, &["preemptionPolicy"])),
    ]
}

fn storageclass_cells(sc: &Value, now: i64) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| s(sc, &["metadata", "annotations", k]) == "true");
    let mut n = s(sc, &["metadata", "name"]).to_string();
    if is_default {
        n.push_str(" (default)");
    }
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(n),
        json!(s(sc, &["provisioner"])),
        json!(or(s(sc, &["reclaimPolicy"]), "Delete")),
        json!(or(s(sc, &["volumeBindingMode"]), "Immediate")),
        json!(get(sc, &["allowVolumeExpansion"])
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        age(sc, now),
    ]
}

fn ingress_cells(ing: &Value, now: i64) -> Vec<Value> {
    let class = match get(ing, &["spec", "ingressClassName"]).and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => "<none>".into(),
    };
    let rules = arr(ing, &["spec", "rules"]);
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for r in rules {
        if hosts.len() == 3 {
            more = true;
        }
        let h = s(r, &["host"]);
        if !more && !h.is_empty() {
            hosts.push(h);
        }
    }
    let hosts_text = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - 3)
    } else {
        hosts.join(",")
    };
    let addrs = super::load_balancer_addresses(ing);
    let ports = if arr(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing),
        json!(class),
        json!(hosts_text),
        json!(addrs.join(",")),
        json!(ports),
        age(ing, now),
    ]
}

fn ingressclass_cells(ic: &Value, now: i64) -> Vec<Value> {
    let params = match get(ic, &["spec", "parameters"]) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut t = s(p, &["kind"]).to_string();
            if let Some(g) = get(p, &["apiGroup"]).and_then(Value::as_str) {
                t = format!("{t}.{g}");
            }
            format!("{t}/{}", s(p, &["name"]))
        }
    };
    vec![
        name(ic),
        json!(s(ic, &["spec", "controller"])),
        json!(params),
        age(ic, now),
    ]
}

fn networkpolicy_cells(np: &Value, now: i64) -> Vec<Value> {
    let sel = get(np, &["spec", "podSelector"])
        .cloned()
        .unwrap_or_else(|| json!({}));
    vec![
        name(np),
        json!(format_label_selector(Some(&sel))),
        age(np, now),
    ]
}

fn quantity_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

/// Upstream's formatHPAMetrics for autoscaling/v2 objects, plus the
/// autoscaling/v1 CPU-utilization shape.
fn hpa_targets(hpa: &Value) -> String {
    let specs = arr(hpa, &["spec", "metrics"]);
    let statuses = arr(hpa, &["status", "currentMetrics"]);
    if specs.is_empty() {
        if let Some(target) =
            get(hpa, &["spec", "targetCPUUtilizationPercentage"]).and_then(Value::as_i64)
        {
            let current = match get(hpa, &["status", "currentCPUUtilizationPercentage"])
                .and_then(Value::as_i64)
            {
                Some(c) => format!("{c}%"),
                None => "<unknown>".into(),
            };
            return format!("cpu: {current}/{target}%");
        }
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let ty = s(spec, &["type"]);
        let text = match ty {
            "External" | "Object" | "Pods" => {
                let key = match ty {
                    "External" => "external",
                    "Object" => "object",
                    _ => "pods",
                };
                let st = status.and_then(|st| get(st, &[key]));
                let target = get(spec, &[key, "target"]).cloned().unwrap_or(Value::Null);
                if ty == "Pods" || get(&target, &["averageValue"]).is_some() {
                    let cur = st
                        .and_then(|st| get(st, &["current", "averageValue"]))
                        .map_or_else(|| "<unknown>".to_string(), |v| quantity_text(Some(v)));
                    let suffix = if ty == "Pods" { "" } else { " (avg)" };
                    format!(
                        "{cur}/{}{suffix}",
                        quantity_text(get(&target, &["averageValue"]))
                    )
                } else {
                    let cur = st.map_or_else(
                        || "<unknown>".to_string(),
                        |st| quantity_text(get(st, &["current", "value"])),
                    );
                    format!("{cur}/{}", quantity_text(get(&target, &["value"])))
                }
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let res_name = s(spec, &[key, "name"]);
                let st = status.and_then(|st| get(st, &[key]));
                let target = get(spec, &[key, "target"]).cloned().unwrap_or(Value::Null);
                if let Some(avg) = get(&target, &["averageValue"]) {
                    let cur = st.map_or_else(
                        || "<unknown>".to_string(),
                        |st| quantity_text(get(st, &["current", "averageValue"])),
                    );
                    format!("{res_name}: {cur}/{}", quantity_text(Some(avg)))
                } else {
                    let cur = st
                        .and_then(|st| get(st, &["current", "averageUtilization"]))
                        .and_then(Value::as_i64)
                        .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
                    let tgt = get(&target, &["averageUtilization"])
                        .and_then(Value::as_i64)
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{res_name}: {cur}/{tgt}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(text);
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}

fn hpa_cells(hpa: &Value, now: i64) -> Vec<Value> {
    let min = match get(hpa, &["spec", "minReplicas"]).and_then(Value::as_i64) {
        Some(m) => m.to_string(),
        None => "<unset>".into(),
    };
    vec![
        name(hpa),
        json!(format!(
            "{}/{}",
            s(hpa, &["spec", "scaleTargetRef", "kind"]),
            s(hpa, &["spec", "scaleTargetRef", "name"])
        )),
        json!(hpa_targets(hpa)),
        json!(min),
        json!(int(hpa, &["spec", "maxReplicas"])),
        json!(int(hpa, &["status", "currentReplicas"])),
        age(hpa, now),
    ]
}

fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

fn pdb_cells(pdb: &Value, now: i64) -> Vec<Value> {
    vec![
        name(pdb),
        json!(int_or_string(get(pdb, &["spec", "minAvailable"]))),
        json!(int_or_string(get(pdb, &["spec", "maxUnavailable"]))),
        json!(int(pdb, &["status", "disruptionsAllowed"])),
        age(pdb, now),
    ]
}

fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

fn endpointslice_cells(es: &Value, now: i64) -> Vec<Value> {
    const MAX: usize = 3;
    let ports = arr(es, &["ports"]);
    let mut plist: Vec<String> = Vec::new();
    let mut pmore = false;
    for p in ports {
        if plist.len() < MAX {
            let text = match (
                get(p, &["port"]).and_then(Value::as_i64),
                get(p, &["name"]).and_then(Value::as_str),
            ) {
                (Some(n), _) => n.to_string(),
                (None, Some(n)) => n.to_string(),
                (None, None) => "*".to_string(),
            };
            plist.push(text);
        } else {
            pmore = true;
        }
    }
    let mut elist: Vec<String> = Vec::new();
    let mut emore = false;
    let mut ecount = 0;
    for ep in arr(es, &["endpoints"]) {
        for a in arr(ep, &["addresses"]) {
            if elist.len() < MAX {
                elist.push(a.as_str().unwrap_or_default().to_string());
            } else {
                emore = true;
            }
            ecount += 1;
        }
    }
    vec![
        name(es),
        json!(s(es, &["addressType"])),
        json!(list_with_more(&plist, pmore, ports.len(), MAX)),
        json!(list_with_more(&elist, emore, ecount, MAX)),
        age(es, now),
    ]
}

fn runtimeclass_cells(rc: &Value, now: i64) -> Vec<Value> {
    vec![name(rc), json!(s(rc, &["handler"])), age(rc, now)]
}

fn webhook_cells(w: &Value, now: i64) -> Vec<Value> {
    vec![
        name(w),
        json!(arr(w, &["webhooks"]).len() as i64),
        age(w, now),
    ]
}

fn csr_cells(csr: &Value, now: i64) -> Vec<Value> {
    let (mut approved, mut denied, mut failed) = (false, false, false);
    for cond in arr(csr, &["status", "conditions"]) {
        match s(cond, &["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut status = if denied {
        "Denied".to_string()
    } else if approved {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if failed {
        status.push_str(",Failed");
    }
    if !s(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    let signer = match s(csr, &["spec", "signerName"]) {
        "" => "<none>".to_string(),
        v => v.to_string(),
    };
    let duration = match get(csr, &["spec", "expirationSeconds"]).and_then(Value::as_i64) {
        Some(secs) => super::human_duration(secs),
        None => "<none>".into(),
    };
    vec![
        name(csr),
        age(csr, now),
        json!(signer),
        json!(s(csr, &["spec", "username"])),
        json!(duration),
        json!(status),
    ]
}
