//! Printers for batch/v1 kinds: jobs and cronjobs.

use serde_json::{json, Value};

use super::{
    age, age_col, arr, c, container_cells, format_label_selector, get, human_duration, int, name,
    name_col, parse_rfc3339, s, since, wide, CellFn, ColumnDef,
};

pub(super) fn printer(group: &str, resource: &str) -> Option<(Vec<ColumnDef>, CellFn)> {
    if group != "batch" {
        return None;
    }
    let tail = || {
        vec![
            wide(
                "Containers",
                "string",
                "Container names in the pod template.",
            ),
            wide("Images", "string", "Container images in the pod template."),
            wide("Selector", "string", "Label selector for the job's pods."),
        ]
    };
    Some(match resource {
        "jobs" => {
            let mut cols = vec![
                name_col(),
                c("Status", "string", "Summary of the job's conditions."),
                c(
                    "Completions",
                    "string",
                    "Succeeded pods out of required completions.",
                ),
                c(
                    "Duration",
                    "string",
                    "How long the job ran or has been running.",
                ),
                age_col(),
            ];
            cols.extend(tail());
            (cols, job_cells as CellFn)
        }
        "cronjobs" => {
            let mut cols = vec![
                name_col(),
                c("Schedule", "string", "Cron schedule."),
                c("Timezone", "string", "Time zone of the schedule."),
                c("Suspend", "boolean", "Whether new runs are suspended."),
                c("Active", "integer", "Currently running jobs."),
                c(
                    "Last Schedule",
                    "string",
                    "Time since the last scheduled run.",
                ),
                age_col(),
            ];
            cols.extend(tail());
            (cols, cronjob_cells)
        }
        _ => return None,
    })
}

fn condition_true(obj: &Value, ty: &str) -> bool {
    arr(obj, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == ty)
        .is_some_and(|c| s(c, &["status"]) == "True")
}

/// The Status column of a job.
pub(crate) fn job_status(job: &Value) -> &'static str {
    if condition_true(job, "Complete") {
        "Complete"
    } else if condition_true(job, "Failed") {
        "Failed"
    } else if get(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if condition_true(job, "Suspended") {
        "Suspended"
    } else if condition_true(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job_cells(job: &Value, now: i64) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match get(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => {
            let parallelism = int(job, &["spec", "parallelism"]);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let time = |k: &str| {
        get(job, &["status", k])
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
    };
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let (names, images) = container_cells(arr(job, &["spec", "template", "spec", "containers"]));
    vec![
        name(job),
        json!(job_status(job)),
        json!(completions),
        json!(duration),
        age(job, now),
        names,
        images,
        json!(format_label_selector(get(job, &["spec", "selector"]))),
    ]
}

fn cronjob_cells(cj: &Value, now: i64) -> Vec<Value> {
    let last = match get(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    let tz = match s(cj, &["spec", "timeZone"]) {
        "" if get(cj, &["spec", "timeZone"]).is_none() => "<none>".to_string(),
        v => v.to_string(),
    };
    let suspend = match get(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = get(cj, &["spec", "jobTemplate", "spec"])
        .cloned()
        .unwrap_or(Value::Null);
    let (names, images) = container_cells(arr(&job_spec, &["template", "spec", "containers"]));
    vec![
        name(cj),
        json!(s(cj, &["spec", "schedule"])),
        json!(tz),
        json!(suspend),
        json!(arr(cj, &["status", "active"]).len() as i64),
        json!(last),
        age(cj, now),
        names,
        images,
        json!(format_label_selector(get(&job_spec, &["selector"]))),
    ]
}
