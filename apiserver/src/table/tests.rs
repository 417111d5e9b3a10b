//! Named table tests for the kind printers, age formatting and the Table envelope.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::*;

const NOW: &str = "2024-05-01T12:00:00Z";

fn now() -> SystemTime {
    let secs = parse_rfc3339(NOW).expect("NOW parses");
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("positive"))
}

fn cells(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
    TablePrinter::new(group, resource, None).cells(obj, now())
}

fn pod(status: Value, extra_meta: Value) -> Value {
    let mut meta =
        json!({"name": "p", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"});
    if let (Some(m), Some(e)) = (meta.as_object_mut(), extra_meta.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "nginx"}], "initContainers": [{"name": "init", "image": "busybox"}]},
        "status": status,
    })
}

#[test]
fn pod_status_reasons() {
    let cases = [
        (
            "running",
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
            json!({}),
            "Running",
        ),
        (
            "pending_no_statuses",
            json!({"phase": "Pending"}),
            json!({}),
            "Pending",
        ),
        (
            "crash_loop_back_off",
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 4,
                   "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            json!({}),
            "CrashLoopBackOff",
        ),
        (
            "completed",
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                   "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
            json!({}),
            "Completed",
        ),
        (
            "init_zero_of_one",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 0,
                   "state": {"running": {}}}]}),
            json!({}),
            "Init:0/1",
        ),
        (
            "init_crash_loop",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 2,
                   "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
            json!({}),
            "Init:CrashLoopBackOff",
        ),
        (
            "init_exit_code",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "restartCount": 0,
                   "state": {"terminated": {"exitCode": 3}}}]}),
            json!({}),
            "Init:ExitCode:3",
        ),
        (
            "pod_initializing_after_init_done",
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                   "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
            json!({}),
            "PodInitializing",
        ),
        (
            "terminating",
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
            json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            "Terminating",
        ),
        (
            "node_lost_is_unknown",
            json!({"phase": "Running", "reason": "NodeLost"}),
            json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            "Unknown",
        ),
        (
            "deleted_succeeded_pod_keeps_completed",
            json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
            json!({"deletionTimestamp": "2024-05-01T11:59:00Z"}),
            "Completed",
        ),
        (
            "evicted_status_reason",
            json!({"phase": "Failed", "reason": "Evicted"}),
            json!({}),
            "Evicted",
        ),
        (
            "scheduling_gated",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
            json!({}),
            "SchedulingGated",
        ),
    ];
    for (name, status, meta, want) in cases {
        let c = cells("", "pods", &pod(status, meta));
        assert_eq!(c[2], json!(want), "{name}: cells {c:?}");
    }
}

#[test]
fn pod_ready_counts() {
    let cases = [
        (
            "none_ready",
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "state": {"running": {}}}]}),
            2,
            "0/2",
        ),
        (
            "one_of_two_ready",
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "ready": false, "state": {"running": {}}}]}),
            2,
            "1/2",
        ),
        (
            "both_ready",
            json!({"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}},
                {"name": "b", "ready": true, "state": {"running": {}}}]}),
            2,
            "2/2",
        ),
    ];
    for (name, status, n, want) in cases {
        let containers: Vec<Value> = (0..n).map(|i| json!({"name": format!("c{i}")})).collect();
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": containers}, "status": status});
        assert_eq!(cells("", "pods", &p)[1], json!(want), "{name}");
    }
    let sidecar = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "s", "restartPolicy": "Always"}]},
        "status": {"phase": "Running",
                   "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}
    });
    assert_eq!(
        cells("", "pods", &sidecar)[1],
        json!("2/2"),
        "sidecar_counts_toward_total_and_ready"
    );
}

#[test]
fn pod_restarts_text() {
    let cases = [
        (
            "no_restarts",
            json!([{"name": "a", "restartCount": 0, "state": {"running": {}}}]),
            "0",
        ),
        (
            "restarts_without_last_state",
            json!([{"name": "a", "restartCount": 2, "state": {"running": {}}}]),
            "2",
        ),
        (
            "restarts_with_last_termination",
            json!([{"name": "a", "restartCount": 3, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:55:00Z"}}}]),
            "3 (5m ago)",
        ),
        (
            "restarts_summed_latest_time",
            json!([
                {"name": "a", "restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"finishedAt": "2024-05-01T10:00:00Z"}}},
                {"name": "b", "restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"finishedAt": "2024-05-01T11:59:15Z"}}}]),
            "3 (45s ago)",
        ),
    ];
    for (name, statuses, want) in cases {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                       "status": {"phase": "Running", "containerStatuses": statuses}});
        assert_eq!(cells("", "pods", &p)[3], json!(want), "{name}");
    }
}

#[test]
fn pod_wide_columns() {
    let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeName": "n1",
                   "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "x/no"}]},
                   "status": {"podIPs": [{"ip": "10.1.0.4"}], "conditions": [{"type": "x/ok", "status": "True"}]}});
    let c = cells("", "pods", &p);
    assert_eq!(
        &c[5..],
        &[
            json!("10.1.0.4"),
            json!("n1"),
            json!("<none>"),
            json!("1/2")
        ],
        "pod_wide_columns"
    );
    let printer = TablePrinter::new("", "pods", None);
    assert_eq!(
        printer.column_names(),
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ],
        "pod_column_names"
    );
    let defs = printer.column_definitions();
    assert_eq!(defs[0]["format"], json!("name"), "pod_name_format");
    assert_eq!(defs[5]["priority"], json!(1), "pod_ip_is_wide");
    assert_eq!(defs[4]["priority"], json!(0), "pod_age_not_wide");
}

#[test]
fn age_formatting() {
    let cases = [
        ("zero", 0, "0s"),
        ("slight_clock_skew", -1, "0s"),
        ("future_is_invalid", -5, "<invalid>"),
        ("seconds", 45, "45s"),
        ("under_two_minutes_in_seconds", 119, "119s"),
        ("minutes_and_seconds", 5 * 60 + 3, "5m3s"),
        ("whole_minutes", 4 * 60, "4m"),
        ("minutes_only_after_ten", 42 * 60 + 10, "42m"),
        ("three_hours", 3 * 3600, "3h"),
        ("hours_and_minutes", 3 * 3600 + 25 * 60, "3h25m"),
        ("hours_only_after_eight", 20 * 3600 + 59 * 60, "20h"),
        ("days_and_hours", 2 * 86400 + 5 * 3600, "2d5h"),
        ("whole_days", 3 * 86400, "3d"),
        ("days_only_after_eight", 400 * 86400, "400d"),
        ("years_and_days", 3 * 365 * 86400 + 10 * 86400, "3y10d"),
        ("years", 9 * 365 * 86400, "9y"),
    ];
    for (name, secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{name}");
    }
    let missing = json!({"metadata": {"name": "x"}});
    assert_eq!(
        cells("", "configmaps", &missing)[2],
        json!("<unknown>"),
        "missing_creation_timestamp"
    );
    let fractional =
        json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:59:15.123456+00:00"}});
    assert_eq!(
        cells("", "configmaps", &fractional)[2],
        json!("45s"),
        "fractional_offset_timestamp"
    );
}

#[test]
fn rfc3339_round_trip() {
    let cases = [
        ("epoch", "1970-01-01T00:00:00Z", 0),
        ("leap_day", "2024-02-29T23:59:59Z", 1_709_251_199),
        ("offset", "2024-05-01T14:00:00+02:00", 1_714_564_800),
    ];
    for (name, text, secs) in cases {
        assert_eq!(parse_rfc3339(text), Some(secs), "{name}");
    }
    assert_eq!(
        format_rfc3339(1_709_251_199),
        "2024-02-29T23:59:59Z",
        "format_leap_day"
    );
    assert_eq!(parse_rfc3339("yesterday"), None, "garbage_rejected");
}

#[test]
fn service_ports_text() {
    let cases = [
        (
            "single_tcp",
            json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}}),
            "80/TCP",
        ),
        (
            "default_protocol",
            json!({"spec": {"ports": [{"port": 53}]}}),
            "53/TCP",
        ),
        (
            "node_port",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
            "80:30080/TCP",
        ),
        (
            "multiple",
            json!({"spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}}),
            "53/UDP,53/TCP",
        ),
        ("no_ports", json!({"spec": {"type": "ClusterIP"}}), "<none>"),
    ];
    for (name, svc, want) in cases {
        assert_eq!(cells("", "services", &svc)[4], json!(want), "{name}");
    }
}

#[test]
fn service_columns() {
    let cases = [
        (
            "cluster_ip_service",
            json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T09:00:00Z"},
                   "spec": {"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web", "a": "b"}}}),
            json!([
                "web",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "80/TCP",
                "3h",
                "a=b,app=web"
            ]),
        ),
        (
            "pending_load_balancer",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1", "ports": [{"port": 443, "nodePort": 31000, "protocol": "TCP"}]}}),
            json!([
                "lb",
                "LoadBalancer",
                "10.0.0.1",
                "<pending>",
                "443:31000/TCP",
                "<unknown>",
                "<none>"
            ]),
        ),
        (
            "external_name",
            json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            json!([
                "ext",
                "ExternalName",
                "<none>",
                "example.com",
                "<none>",
                "<unknown>",
                "<none>"
            ]),
        ),
    ];
    for (name, svc, want) in cases {
        assert_eq!(Value::Array(cells("", "services", &svc)), want, "{name}");
    }
}

#[test]
fn deployment_columns() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-04-29T07:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let printer = TablePrinter::new("apps", "deployments", None);
    assert_eq!(
        printer.column_names(),
        [
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ],
        "deployment_column_names"
    );
    assert_eq!(
        Value::Array(printer.cells(&d, now())),
        json!([
            "web",
            "2/3",
            3,
            2,
            "2d5h",
            "nginx,side",
            "nginx:1.25,busybox",
            "app=web"
        ]),
        "deployment_cells"
    );
    let bare = json!({"metadata": {"name": "d"}, "spec": {}});
    assert_eq!(
        printer.cells(&bare, now())[1],
        json!("0/1"),
        "deployment_default_replicas"
    );
}

#[test]
fn other_builtin_cells() {
    let cases = [
        (
            "replicaset_integers",
            "apps",
            "replicasets",
            json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2, "selector": {}}, "status": {"replicas": 2, "readyReplicas": 1}}),
            json!(["rs", 2, 2, 1, "<unknown>", "", "", "<none>"]),
        ),
        (
            "statefulset_ready",
            "apps",
            "statefulsets",
            json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 3}}),
            json!(["db", "3/3", "<unknown>", "", ""]),
        ),
        (
            "job_complete",
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"}, "spec": {"completions": 1},
                   "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:30Z",
                              "conditions": [{"type": "Complete", "status": "True"}]}}),
            json!(["j", "Complete", "1/1", "30s", "<unknown>", "", "", "<none>"]),
        ),
        (
            "job_running_parallel",
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"}, "spec": {"parallelism": 3}, "status": {"startTime": "2024-05-01T11:58:00Z"}}),
            json!([
                "j",
                "Running",
                "0/1 of 3",
                "2m",
                "<unknown>",
                "",
                "",
                "<none>"
            ]),
        ),
        (
            "cronjob",
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "cj"}, "spec": {"schedule": "*/5 * * * *", "suspend": false},
                   "status": {"active": [{}], "lastScheduleTime": "2024-05-01T11:55:00Z"}}),
            json!([
                "cj",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "5m",
                "<unknown>",
                "",
                "",
                "<none>"
            ]),
        ),
        (
            "configmap_data",
            "",
            "configmaps",
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}}),
            json!(["c", 2, "<unknown>"]),
        ),
        (
            "secret_type_data",
            "",
            "secrets",
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA=="}}),
            json!(["s", "Opaque", 1, "<unknown>"]),
        ),
        (
            "namespace_status",
            "",
            "namespaces",
            json!({"metadata": {"name": "ns"}, "status": {"phase": "Active"}}),
            json!(["ns", "Active", "<unknown>"]),
        ),
        (
            "node_not_ready_unschedulable",
            "",
            "nodes",
            json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true},
                   "status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.32.0"},
                              "addresses": [{"type": "InternalIP", "address": "192.168.1.2"}]}}),
            json!([
                "n",
                "NotReady,SchedulingDisabled",
                "control-plane",
                "<unknown>",
                "v1.32.0",
                "192.168.1.2",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        ),
        (
            "endpoints_more",
            "",
            "endpoints",
            json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "1.1.1.1"}, {"ip": "1.1.1.2"}, {"ip": "1.1.1.3"}, {"ip": "1.1.1.4"}], "ports": [{"port": 80}]}]}),
            json!([
                "e",
                "1.1.1.1:80,1.1.1.2:80,1.1.1.3:80 + 1 more...",
                "<unknown>"
            ]),
        ),
        (
            "event_row",
            "",
            "events",
            json!({"metadata": {"name": "ev"}, "type": "Warning", "reason": "BackOff", "message": " restarting ",
                   "involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet", "host": "n1"},
                   "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 7}),
            json!([
                "60s",
                "Warning",
                "BackOff",
                "pod/p",
                "",
                "kubelet, n1",
                "restarting",
                "60m",
                7,
                "ev"
            ]),
        ),
        (
            "events_k8s_io_event_row",
            "events.k8s.io",
            "events",
            json!({"metadata": {"name": "ev"}, "type": "Normal", "reason": "Synced", "note": "done",
                   "regarding": {"kind": "ConfigMap", "name": "c"}, "reportingController": "ctl", "reportingInstance": "ctl-0",
                   "deprecatedFirstTimestamp": "2024-05-01T11:00:00Z", "deprecatedLastTimestamp": "2024-05-01T11:59:00Z",
                   "deprecatedCount": 2}),
            json!([
                "60s",
                "Normal",
                "Synced",
                "configmap/c",
                "",
                "ctl, ctl-0",
                "done",
                "60m",
                2,
                "ev"
            ]),
        ),
        (
            "lease_holder",
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
            json!(["l", "me", "<unknown>"]),
        ),
        (
            "crd_created_at",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            json!({"metadata": {"name": "widgets.example.com", "creationTimestamp": "2024-05-01T10:00:00Z"}}),
            json!(["widgets.example.com", "2024-05-01T10:00:00Z"]),
        ),
        (
            "rolebinding_subjects",
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "r"},
                   "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]}),
            json!(["rb", "Role/r", "<unknown>", "u", "", "ns/sa"]),
        ),
        (
            "controllerrevision_owner",
            "apps",
            "controllerrevisions",
            json!({"metadata": {"name": "cr", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2}),
            json!(["cr", "statefulset.apps/db", 2, "<unknown>"]),
        ),
        (
            "hpa_cpu_target",
            "autoscaling",
            "horizontalpodautoscalers",
            json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                   "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]},
                   "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30}}}]}}),
            json!([
                "h",
                "Deployment/web",
                "cpu: 30%/80%",
                "1",
                5,
                2,
                "<unknown>"
            ]),
        ),
        (
            "pdb_min_available",
            "policy",
            "poddisruptionbudgets",
            json!({"metadata": {"name": "pdb"}, "spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 0}}),
            json!(["pdb", "1", "N/A", 0, "<unknown>"]),
        ),
        (
            "storageclass_default",
            "storage.k8s.io",
            "storageclasses",
            json!({"metadata": {"name": "std", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "x.io/p"}),
            json!([
                "std (default)",
                "x.io/p",
                "Delete",
                "Immediate",
                false,
                "<unknown>"
            ]),
        ),
    ];
    for (name, group, resource, obj, want) in cases {
        assert_eq!(Value::Array(cells(group, resource, &obj)), want, "{name}");
    }
}

#[test]
fn crd_printer_columns_with_jsonpath() {
    let cols = json!([
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "First Host", "type": "string", "jsonPath": ".spec.hosts[0].name", "priority": 1},
        {"name": "Ports", "type": "string", "jsonPath": ".spec.hosts[*].port"},
        {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
        {"name": "Missing", "type": "string", "jsonPath": ".status.nothing"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]);
    let printer = TablePrinter::new("example.com", "widgets", Some(&cols));
    assert_eq!(
        printer.column_names(),
        [
            "Name",
            "Replicas",
            "First Host",
            "Ports",
            "Ready",
            "Missing",
            "Age"
        ],
        "crd_column_names"
    );
    let defs = printer.column_definitions();
    assert_eq!(defs[1]["type"], json!("integer"), "crd_integer_type");
    assert_eq!(defs[2]["priority"], json!(1), "crd_priority");
    let obj = json!({
        "metadata": {"name": "w1", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"replicas": 3, "hosts": [{"name": "a.example", "port": 8080}, {"name": "b.example", "port": 9090}]},
        "status": {"ready": true}
    });
    assert_eq!(
        Value::Array(printer.cells(&obj, now())),
        json!(["w1", 3, "a.example", "8080", true, null, "60m"]),
        "crd_cells"
    );
}

#[test]
fn default_name_and_age() {
    let cases = [
        (
            "custom_resource_without_columns",
            "example.com",
            "gadgets",
            None,
        ),
        (
            "custom_resource_with_empty_columns",
            "example.com",
            "gadgets",
            Some(json!([])),
        ),
        ("unknown_core_resource", "", "podtemplates", None),
    ];
    let obj = json!({"metadata": {"name": "g", "creationTimestamp": "2024-05-01T11:59:58Z"}});
    for (name, group, resource, cols) in cases {
        let printer = TablePrinter::new(group, resource, cols.as_ref());
        assert_eq!(printer.column_names(), ["Name", "Age"], "{name}");
        assert_eq!(
            Value::Array(printer.cells(&obj, now())),
            json!(["g", "2s"]),
            "{name}"
        );
    }
}

#[test]
fn include_object_modes() {
    let printer = TablePrinter::new("", "configmaps", None);
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5"}, "data": {"k": "v"}});
    let cases = [
        (
            "metadata_default",
            IncludeObject::parse(""),
            Some(
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "c", "resourceVersion": "5"}}),
            ),
        ),
        (
            "whole_object",
            IncludeObject::parse("Object"),
            Some(obj.clone()),
        ),
        ("none_omits_object", IncludeObject::parse("None"), None),
    ];
    for (name, include, want) in cases {
        let include = include.unwrap_or_else(|| panic!("{name}: parse"));
        let row = printer.row(&obj, include, now());
        assert_eq!(row.get("object").cloned(), want, "{name}");
        assert_eq!(row["cells"][0], json!("c"), "{name}");
    }
    assert_eq!(
        IncludeObject::parse("Bogus"),
        None,
        "unknown_include_object"
    );
}

#[test]
fn table_envelope() {
    let printer = TablePrinter::new("", "configmaps", None);
    let a = json!({"metadata": {"name": "a"}});
    let b = json!({"metadata": {"name": "b"}});
    let t = table(
        &printer,
        &[&a, &b],
        IncludeObject::None,
        true,
        "42",
        Some("tok"),
        Some(7),
        now(),
    );
    assert_eq!(t["kind"], json!("Table"), "table_kind");
    assert_eq!(
        t["apiVersion"],
        json!("meta.k8s.io/v1"),
        "table_api_version"
    );
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "42", "continue": "tok", "remainingItemCount": 7}),
        "table_metadata"
    );
    assert_eq!(
        t["columnDefinitions"].as_array().map(Vec::len),
        Some(3),
        "table_columns"
    );
    assert_eq!(t["rows"].as_array().map(Vec::len), Some(2), "table_rows");
    let t = table(
        &printer,
        &[],
        IncludeObject::Metadata,
        false,
        "1",
        None,
        None,
        now(),
    );
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "1"}),
        "table_metadata_minimal"
    );
    assert_eq!(t["columnDefinitions"], json!([]), "table_without_headers");
}
