//! Printers for apps/v1 kinds: deployments, replicasets, statefulsets, daemonsets, controllerrevisions.

use serde_json::{json, Value};

use super::{
    age, age_col, arr, c, container_cells, format_label_selector, format_labels, get, int, name,
    name_col, s, wide, CellFn, ColumnDef,
};

fn containers_col() -> ColumnDef {
    wide(
        "Containers",
        "string",
        "Container names in the pod template.",
    )
}

fn images_col() -> ColumnDef {
    wide("Images", "string", "Container images in the pod template.")
}

fn selector_col() -> ColumnDef {
    wide("Selector", "string", "Label selector for the managed pods.")
}

pub(super) fn printer(group: &str, resource: &str) -> Option<(Vec<ColumnDef>, CellFn)> {
    if group != "apps" && group != "extensions" {
        return None;
    }
    Some(match resource {
        "deployments" => (
            vec![
                name_col(),
                c("Ready", "string", "Ready pods out of desired pods."),
                c("Up-to-date", "string", "Pods running the latest template."),
                c("Available", "string", "Pods available to serve."),
                age_col(),
                containers_col(),
                images_col(),
                selector_col(),
            ],
            deployment_cells as CellFn,
        ),
        "replicasets" => (
            vec![
                name_col(),
                c("Desired", "integer", "Desired number of pods."),
                c("Current", "integer", "Observed number of pods."),
                c("Ready", "integer", "Ready pods."),
                age_col(),
                containers_col(),
                images_col(),
                selector_col(),
            ],
            replicaset_cells,
        ),
        "statefulsets" => (
            vec![
                name_col(),
                c("Ready", "string", "Ready pods out of desired pods."),
                age_col(),
                containers_col(),
                images_col(),
            ],
            statefulset_cells,
        ),
        "daemonsets" => (
            vec![
                name_col(),
                c(
                    "Desired",
                    "integer",
                    "Nodes that should run the daemon pod.",
                ),
                c("Current", "integer", "Nodes running the daemon pod."),
                c("Ready", "integer", "Nodes with a ready daemon pod."),
                c(
                    "Up-to-date",
                    "integer",
                    "Nodes running the latest template.",
                ),
                c(
                    "Available",
                    "integer",
                    "Nodes with an available daemon pod.",
                ),
                c(
                    "Node Selector",
                    "string",
                    "Node selector of the pod template.",
                ),
                age_col(),
                containers_col(),
                images_col(),
                selector_col(),
            ],
            daemonset_cells,
        ),
        "controllerrevisions" if group == "apps" => (
            vec![
                name_col(),
                c("Controller", "string", "Controller owning the revision."),
                c("Revision", "string", "Revision number."),
                age_col(),
            ],
            controllerrevision_cells,
        ),
        _ => return None,
    })
}

fn desired(obj: &Value) -> i64 {
    get(obj, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_containers(obj: &Value) -> &[Value] {
    arr(obj, &["spec", "template", "spec", "containers"])
}

fn deployment_cells(d: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(d));
    let selector = match get(d, &["spec", "selector"]) {
        None => String::new(),
        Some(sel) => match crate::selectors::LabelSelector::from_label_selector(sel) {
            Ok(s) => s.to_string(),
            Err(_) => "<invalid>".into(),
        },
    };
    vec![
        name(d),
        json!(format!(
            "{}/{}",
            int(d, &["status", "readyReplicas"]),
            desired(d)
        )),
        json!(int(d, &["status", "updatedReplicas"])),
        json!(int(d, &["status", "availableReplicas"])),
        age(d, now),
        names,
        images,
        json!(selector),
    ]
}

fn replicaset_cells(rs: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(rs));
    vec![
        name(rs),
        json!(desired(rs)),
        json!(int(rs, &["status", "replicas"])),
        json!(int(rs, &["status", "readyReplicas"])),
        age(rs, now),
        names,
        images,
        json!(format_label_selector(get(rs, &["spec", "selector"]))),
    ]
}

fn statefulset_cells(ss: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(ss));
    vec![
        name(ss),
        json!(format!(
            "{}/{}",
            int(ss, &["status", "readyReplicas"]),
            desired(ss)
        )),
        age(ss, now),
        names,
        images,
    ]
}

fn daemonset_cells(ds: &Value, now: i64) -> Vec<Value> {
    let (names, images) = container_cells(template_containers(ds));
    vec![
        name(ds),
        json!(int(ds, &["status", "desiredNumberScheduled"])),
        json!(int(ds, &["status", "currentNumberScheduled"])),
        json!(int(ds, &["status", "numberReady"])),
        json!(int(ds, &["status", "updatedNumberScheduled"])),
        json!(int(ds, &["status", "numberAvailable"])),
        json!(format_labels(get(
            ds,
            &["spec", "template", "spec", "nodeSelector"]
        ))),
        age(ds, now),
        names,
        images,
        json!(format_label_selector(get(ds, &["spec", "selector"]))),
    ]
}

/// `kind.group/name` in lower case for the controlling owner, or `<none>`.
pub(crate) fn controller_name(obj: &Value) -> String {
    let owner = arr(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| get(o, &["controller"]).and_then(Value::as_bool) == Some(true));
    let Some(owner) = owner else {
        return "<none>".into();
    };
    let api_version = s(owner, &["apiVersion"]);
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = s(owner, &["kind"]);
    let gk = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let owner_name = s(owner, &["name"]);
    if gk.is_empty() {
        owner_name.to_string()
    } else {
        format!("{}/{owner_name}", gk.to_lowercase())
    }
}

fn controllerrevision_cells(cr: &Value, now: i64) -> Vec<Value> {
    vec![
        name(cr),
        json!(controller_name(cr)),
        json!(int(cr, &["revision"])),
        age(cr, now),
    ]
}
