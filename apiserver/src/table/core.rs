//! Printers for core/v1 kinds: pods, services, endpoints, nodes, events, config and storage objects.

use serde_json::{json, Value};

use super::pod::none_if_empty;
use super::{
    age, age_col, arr, c, container_cells, format_labels, get, int, name, name_col, s, since, wide,
    CellFn, ColumnDef,
};

pub(super) fn printer(group: &str, resource: &str) -> Option<(Vec<ColumnDef>, CellFn)> {
    if (group, resource) == ("events.k8s.io", "events") {
        // Upstream prints both Event versions with one printer of the stored form.
        return Some((event_columns(), events_v1_cells));
    }
    if !group.is_empty() {
        return None;
    }
    Some(match resource {
        "pods" => (super::pod::columns(), super::pod::cells as CellFn),
        "services" => (
            vec![
                name_col(),
                c("Type", "string", "How the service is exposed."),
                c("Cluster-IP", "string", "The service's cluster IP address."),
                c(
                    "External-IP",
                    "string",
                    "Addresses the service is reachable on from outside the cluster.",
                ),
                c("Port(s)", "string", "Ports the service exposes."),
                age_col(),
                wide("Selector", "string", "Labels selecting the backing pods."),
            ],
            service_cells,
        ),
        "endpoints" => (
            vec![
                name_col(),
                c("Endpoints", "string", "Addresses backing the service."),
                age_col(),
            ],
            endpoints_cells,
        ),
        "componentstatuses" => (
            vec![
                name_col(),
                c("Status", "string", "Status of the component conditions"),
                c("Message", "string", "Message of the component conditions"),
                c("Error", "string", "Error of the component conditions"),
            ],
            componentstatus_cells,
        ),
        "configmaps" => (
            vec![
                name_col(),
                c("Data", "string", "Number of data keys."),
                age_col(),
            ],
            configmap_cells,
        ),
        "secrets" => (
            vec![
                name_col(),
                c("Type", "string", "Secret type."),
                c("Data", "string", "Number of data keys."),
                age_col(),
            ],
            secret_cells,
        ),
        "namespaces" => (
            vec![
                name_col(),
                c("Status", "string", "Lifecycle phase of the namespace."),
                age_col(),
            ],
            namespace_cells,
        ),
        "nodes" => (
            vec![
                name_col(),
                c("Status", "string", "Node readiness and schedulability."),
                c("Roles", "string", "Roles taken from node-role labels."),
                age_col(),
                c("Version", "string", "Kubelet version."),
                wide("Internal-IP", "string", "First internal address."),
                wide("External-IP", "string", "First external address."),
                wide("OS-Image", "string", "Operating system image."),
                wide("Kernel-Version", "string", "Kernel version."),
                wide(
                    "Container-Runtime",
                    "string",
                    "Container runtime and version.",
                ),
            ],
            node_cells,
        ),
        "serviceaccounts" => (
            vec![
                name_col(),
                c("Secrets", "string", "Number of referenced secrets."),
                age_col(),
            ],
            serviceaccount_cells,
        ),
        "events" => (event_columns(), event_cells),
        "persistentvolumes" => (
            vec![
                name_col(),
                c("Capacity", "string", "Storage capacity."),
                c("Access Modes", "string", "Supported access modes."),
                c("Reclaim Policy", "string", "What happens once released."),
                c("Status", "string", "Volume phase."),
                c("Claim", "string", "Bound claim as namespace/name."),
                c("StorageClass", "string", "Storage class of the volume."),
                c(
                    "VolumeAttributesClass",
                    "string",
                    "Volume attributes class of the volume.",
                ),
                c("Reason", "string", "Reason for the current phase."),
                age_col(),
                wide("VolumeMode", "string", "Filesystem or Block."),
            ],
            pv_cells,
        ),
        "persistentvolumeclaims" => (
            vec![
                name_col(),
                c("Status", "string", "Claim phase."),
                c("Volume", "string", "Bound volume."),
                c("Capacity", "string", "Capacity of the bound volume."),
                c(
                    "Access Modes",
                    "string",
                    "Access modes of the bound volume.",
                ),
                c("StorageClass", "string", "Storage class of the claim."),
                c(
                    "VolumeAttributesClass",
                    "string",
                    "Volume attributes class of the claim.",
                ),
                age_col(),
                wide("VolumeMode", "string", "Filesystem or Block."),
            ],
            pvc_cells,
        ),
        "replicationcontrollers" => (
            vec![
                name_col(),
                c("Desired", "integer", "Desired number of replicas."),
                c("Current", "integer", "Observed number of replicas."),
                c("Ready", "integer", "Ready replicas."),
                age_col(),
                wide("Containers", "string", "Container names in the template."),
                wide("Images", "string", "Container images in the template."),
                wide("Selector", "string", "Pod label selector."),
            ],
            rc_cells,
        ),
        _ => return None,
    })
}

fn strings(v: &Value, path: &[&str]) -> Vec<String> {
    arr(v, path)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Upstream's getServiceExternalIP with wide output (no truncation).
fn service_external_ip(svc: &Value) -> String {
    let external = strings(svc, &["spec", "externalIPs"]);
    match s(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb = super::load_balancer_addresses(svc);
            if !external.is_empty() {
                lb.extend(external);
                return lb.join(",");
            }
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => s(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

/// `80/TCP`, or `80:30080/TCP` with a node port, comma-joined.
pub(crate) fn service_ports(svc: &Value) -> String {
    let pieces: Vec<String> = arr(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let proto = match s(p, &["protocol"]) {
                "" => "TCP",
                other => other,
            };
            let port = int(p, &["port"]);
            let node_port = int(p, &["nodePort"]);
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect();
    if pieces.is_empty() {
        "<none>".into()
    } else {
        pieces.join(",")
    }
}

fn service_cells(svc: &Value, now: i64) -> Vec<Value> {
    let mut cluster_ip = arr(svc, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or("");
    if cluster_ip.is_empty() {
        cluster_ip = s(svc, &["spec", "clusterIP"]);
    }
    vec![
        name(svc),
        json!(s(svc, &["spec", "type"])),
        json!(none_if_empty(cluster_ip)),
        json!(service_external_ip(svc)),
        json!(service_ports(svc)),
        age(svc, now),
        json!(format_labels(get(svc, &["spec", "selector"]))),
    ]
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addrs = arr(ss, &["addresses"]);
        let ports = arr(ss, &["ports"]);
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, &["ip"]).to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(a, &["ip"]), int(p, &["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn endpoints_cells(ep: &Value, now: i64) -> Vec<Value> {
    vec![name(ep), json!(format_endpoints(ep)), age(ep, now)]
}

fn obj_len(v: &Value, key: &str) -> i64 {
    get(v, &[key])
        .and_then(Value::as_object)
        .map_or(0, |m| m.len() as i64)
}

/// Upstream's: the Healthy condition's status, message and error.
fn componentstatus_cells(cs: &Value, _now: i64) -> Vec<Value> {
    let healthy = cs["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Healthy");
    let text = |k: &str| json!(healthy.and_then(|c| c[k].as_str()).unwrap_or(""));
    let status = match healthy.and_then(|c| c["status"].as_str()) {
        Some("True") => "Healthy",
        Some(_) => "Unhealthy",
        None => "Unknown",
    };
    vec![name(cs), json!(status), text("message"), text("error")]
}

fn configmap_cells(cm: &Value, now: i64) -> Vec<Value> {
    vec![
        name(cm),
        json!(obj_len(cm, "data") + obj_len(cm, "binaryData")),
        age(cm, now),
    ]
}

fn secret_cells(sec: &Value, now: i64) -> Vec<Value> {
    vec![
        name(sec),
        json!(s(sec, &["type"])),
        json!(obj_len(sec, "data")),
        age(sec, now),
    ]
}

fn namespace_cells(ns: &Value, now: i64) -> Vec<Value> {
    vec![name(ns), json!(s(ns, &["status", "phase"])), age(ns, now)]
}

fn node_cells(node: &Value, now: i64) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(cond) = arr(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        status.push(if s(cond, &["status"]) == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
                roles.push(v.as_str().unwrap_or_default().to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    let address = |ty: &str| -> String {
        arr(node, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map_or_else(|| "<none>".to_string(), |a| s(a, &["address"]).to_string())
    };
    let info = |k: &str| -> String {
        match s(node, &["status", "nodeInfo", k]) {
            "" => "<unknown>".into(),
            v => v.to_string(),
        }
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        age(node, now),
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn serviceaccount_cells(sa: &Value, now: i64) -> Vec<Value> {
    vec![
        name(sa),
        json!(arr(sa, &["secrets"]).len() as i64),
        age(sa, now),
    ]
}

fn event_columns() -> Vec<ColumnDef> {
    vec![
        c(
            "Last Seen",
            "string",
            "Time since the event was last observed.",
        ),
        c("Type", "string", "Normal or Warning."),
        c("Reason", "string", "Short machine-readable reason."),
        c("Object", "string", "The object the event is about."),
        wide("Subobject", "string", "Field path within the object."),
        wide("Source", "string", "Component that reported the event."),
        c("Message", "string", "Human-readable description."),
        wide(
            "First Seen",
            "string",
            "Time since the event was first observed.",
        ),
        wide("Count", "string", "How many times the event occurred."),
        ColumnDef {
            priority: 1,
            ..name_col()
        },
    ]
}

fn events_v1_cells(ev: &Value, now: i64) -> Vec<Value> {
    event_cells(&crate::conversion::core_event(ev), now)
}

fn event_cells(ev: &Value, now: i64) -> Vec<Value> {
    let nonempty =
        |path: &[&str]| get(ev, path).filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    let first = match nonempty(&["firstTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => since(nonempty(&["eventTime"]), now),
    };
    let mut last = match nonempty(&["lastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(ev, &["count"]);
    if let Some(series) = get(ev, &["series"]) {
        last = since(get(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &["involvedObject", "kind"]).to_lowercase();
    let obj_name = s(ev, &["involvedObject", "name"]);
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let pick = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = pick(
        s(ev, &["source", "component"]),
        s(ev, &["reportingComponent"]),
    );
    let host = pick(s(ev, &["source", "host"]), s(ev, &["reportingInstance"]));
    let source = if host.is_empty() {
        component
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(target),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(first),
        json!(count),
        name(ev),
    ]
}

/// Upstream's GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order.
fn access_modes(v: &Value, path: &[&str]) -> String {
    let modes = strings(v, path);
    let mut out: Vec<&str> = Vec::new();
    for (full, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m == full) {
            out.push(short);
        }
    }
    out.join(",")
}

fn storage_class(v: &Value) -> String {
    let beta = s(
        v,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    );
    if !beta.is_empty() {
        return beta.to_string();
    }
    s(v, &["spec", "storageClassName"]).to_string()
}

fn unset_if_missing(v: &Value, path: &[&str]) -> String {
    match get(v, path).and_then(Value::as_str) {
        Some(x) => x.to_string(),
        None => "<unset>".into(),
    }
}

fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

fn pv_cells(pv: &Value, now: i64) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", s(r, &["namespace"]), s(r, &["name"])),
        None => String::new(),
    };
    let phase = if get(pv, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        s(pv, &["status", "phase"])
    };
    vec![
        name(pv),
        json!(quantity(get(pv, &["spec", "capacity", "storage"]))),
        json!(access_modes(pv, &["spec", "accessModes"])),
        json!(s(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(unset_if_missing(pv, &["spec", "volumeAttributesClassName"])),
        json!(s(pv, &["status", "reason"])),
        age(pv, now),
        json!(unset_if_missing(pv, &["spec", "volumeMode"])),
    ]
}

fn pvc_cells(pvc: &Value, now: i64) -> Vec<Value> {
    let phase = if get(pvc, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        s(pvc, &["status", "phase"])
    };
    let volume = s(pvc, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])),
            access_modes(pvc, &["status", "accessModes"]),
        )
    };
    vec![
        name(pvc),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(unset_if_missing(
            pvc,
            &["spec", "volumeAttributesClassName"]
        )),
        age(pvc, now),
        json!(unset_if_missing(pvc, &["spec", "volumeMode"])),
    ]
}

fn rc_cells(rc: &Value, now: i64) -> Vec<Value> {
    let desired = get(rc, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let (names, images) = container_cells(arr(rc, &["spec", "template", "spec", "containers"]));
    vec![
        name(rc),
        json!(desired),
        json!(int(rc, &["status", "replicas"])),
        json!(int(rc, &["status", "readyReplicas"])),
        age(rc, now),
        names,
        images,
        json!(format_labels(get(rc, &["spec", "selector"]))),
    ]
}
