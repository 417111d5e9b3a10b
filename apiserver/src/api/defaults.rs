//! Upstream's defaulting for built-in kinds (SetDefaults_* and the defaulting admission
//! plugins), so `kubectl get -o yaml` shows what it would upstream.

use serde_json::{json, Map, Value};

/// Sets `key` to `value` when absent (or null).
fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// The object map at `path` (created when missing and `create`), e.g. `["spec", "template"]`.
fn at<'a>(obj: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for p in path {
        let map = cur.as_object_mut()?;
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
}

fn each_in<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Applies the defaults of a built-in group/resource to an object being written.
pub(super) fn apply(group: &str, plural: &str, obj: &mut Value) {
    match (group, plural) {
        ("", "pods") => {
            if let Some(spec) = at(obj, &["spec"]) {
                pod_spec(spec);
                admission_defaults(spec);
            }
        }
        ("", "podtemplates") => template(obj, &["template"]),
        ("", "replicationcontrollers") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "replicas", json!(1));
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "deployments") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                default(spec, "strategy", json!({}));
                if let Some(strategy) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
                    // An empty type is RollingUpdate (protobuf clients send `strategy: {}`).
                    if strategy
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        strategy.insert("type".into(), json!("RollingUpdate"));
                    }
                    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        default(strategy, "rollingUpdate", json!({}));
                        if let Some(ru) = strategy
                            .get_mut("rollingUpdate")
                            .and_then(Value::as_object_mut)
                        {
                            default(ru, "maxUnavailable", json!("25%"));
                            default(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "replicasets") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "replicas", json!(1));
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "statefulsets") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "replicas", json!(1));
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
                if let Some(us) = spec
                    .get_mut("updateStrategy")
                    .and_then(Value::as_object_mut)
                {
                    if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        default(us, "rollingUpdate", json!({"partition": 0}));
                    }
                }
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                for pvc in each_in(spec, "volumeClaimTemplates") {
                    // Upstream encodes each template as a full PersistentVolumeClaim.
                    default(pvc, "apiVersion", json!("v1"));
                    default(pvc, "kind", json!("PersistentVolumeClaim"));
                    if let Some(s) = pvc.get_mut("spec").and_then(Value::as_object_mut) {
                        default(s, "volumeMode", json!("Filesystem"));
                    }
                    default(pvc, "status", json!({"phase": "Pending"}));
                }
            }
            template(obj, &["spec", "template"]);
        }
        ("apps", "daemonsets") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
                if let Some(us) = spec
                    .get_mut("updateStrategy")
                    .and_then(Value::as_object_mut)
                {
                    if us.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                        default(us, "rollingUpdate", json!({}));
                        if let Some(ru) = us.get_mut("rollingUpdate").and_then(Value::as_object_mut)
                        {
                            default(ru, "maxUnavailable", json!(1));
                            default(ru, "maxSurge", json!(0));
                        }
                    }
                }
            }
            template(obj, &["spec", "template"]);
        }
        ("batch", "jobs") => {
            if let Some(spec) = at(obj, &["spec"]) {
                job_spec(spec);
            }
            template(obj, &["spec", "template"]);
        }
        ("batch", "cronjobs") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
            }
            if let Some(spec) = at(obj, &["spec", "jobTemplate", "spec"]) {
                job_spec(spec);
            }
            template(obj, &["spec", "jobTemplate", "spec", "template"]);
        }
        ("", "services") => {
            if let Some(spec) = at(obj, &["spec"]) {
                service_spec(spec);
            }
        }
        ("", "secrets") => {
            if let Some(map) = obj.as_object_mut() {
                default(map, "type", json!("Opaque"));
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            if let Some(role_ref) = at(obj, &["roleRef"]) {
                if role_ref
                    .get("apiGroup")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    role_ref.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
                }
            }
        }
        ("autoscaling", "horizontalpodautoscalers") => {
            // v1 has no metrics list: its default target is set where it is converted to
            // the v2 form it is stored in (`crate::conversion`).
            let v2 = obj.get("apiVersion").and_then(Value::as_str) != Some("autoscaling/v1");
            if let Some(spec) = at(obj, &["spec"]) {
                hpa_spec(spec, v2);
            }
        }
        ("", "persistentvolumes") => {
            if let Some(spec) = at(obj, &["spec"]) {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        _ => {}
    }
}

/// Upstream's `SetDefaults_HorizontalPodAutoscaler` (autoscaling/v2; v1 only has
/// `minReplicas`).
fn hpa_spec(spec: &mut Map<String, Value>, v2: bool) {
    default(spec, "minReplicas", json!(1));
    if !v2 {
        return;
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([crate::conversion::cpu_utilization_metric(json!(
                crate::conversion::DEFAULT_CPU_UTILIZATION
            ))]),
        );
    }
    // A behavior given at all has both directions' rules filled in; scale-down keeps no
    // stabilization window, which the controller's flag decides.
    if let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let rules = [
            (
                "scaleUp",
                Some(0),
                json!([
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}
                ]),
            ),
            (
                "scaleDown",
                None,
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            ),
        ];
        for (direction, window, policies) in rules {
            let entry = behavior.entry(direction).or_insert_with(|| json!({}));
            if entry.is_null() {
                *entry = json!({});
            }
            let Some(r) = entry.as_object_mut() else {
                continue;
            };
            default(r, "selectPolicy", json!("Max"));
            default(r, "policies", policies);
            if let Some(window) = window {
                default(r, "stabilizationWindowSeconds", json!(window));
            }
        }
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    // Both unset means one pod to completion; parallelism alone leaves completions unset.
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
}

fn template(obj: &mut Value, path: &[&str]) {
    if obj.pointer(&format!("/{}", path.join("/"))).is_none() {
        return;
    }
    let mut spec_path = path.to_vec();
    spec_path.push("spec");
    if let Some(spec) = at(obj, &spec_path) {
        pod_spec(spec);
    }
}

/// PodSpec defaults (for pods and pod templates alike).
pub(super) fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers"] {
        for c in each_in(spec, key) {
            container(c);
        }
    }
    for v in each_in(spec, "volumes") {
        for (source, mode_key) in [
            ("configMap", "defaultMode"),
            ("secret", "defaultMode"),
            ("projected", "defaultMode"),
            ("downwardAPI", "defaultMode"),
        ] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                default(s, mode_key, json!(420));
            }
        }
    }
}

/// What the ServiceAccount and Priority admission plugins add to pods (not to templates);
/// DefaultTolerationSeconds is an admission plugin (`pipeline/tolerationseconds.rs`).
fn admission_defaults(spec: &mut Map<String, Value>) {
    default(spec, "serviceAccountName", json!("default"));
    let sa = spec["serviceAccountName"].clone();
    default(spec, "serviceAccount", sa);
    default(spec, "priority", json!(0));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

fn container(c: &mut Map<String, Value>) {
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let tag = if last.contains('@') {
        Some("digest")
    } else {
        last.split_once(':').map(|(_, t)| t)
    };
    default(
        c,
        "imagePullPolicy",
        json!(if tag.is_none() || tag == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        }),
    );
    for p in each_in(c, "ports") {
        default(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                default(h, "scheme", json!("HTTP"));
                default(h, "path", json!("/"));
            }
        }
    }
    for e in each_in(c, "env") {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default(f, "apiVersion", json!("v1"));
        }
    }
}

fn service_spec(spec: &mut Map<String, Value>) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for p in each_in(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        // An unset targetPort (0 or "" from protobuf clients, as Go's zero
        // IntOrString) is the port.
        if matches!(p.get("targetPort"), Some(t) if t == &json!(0) || t == &json!("")) {
            p.remove("targetPort");
        }
        if let Some(port) = p.get("port").cloned() {
            default(p, "targetPort", port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_autoscaler_gets_upstreams_defaults_in_each_version() {
        let cpu80 = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        let mut v2 = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}});
        apply("autoscaling", "horizontalpodautoscalers", &mut v2);
        assert_eq!(v2["spec"]["minReplicas"], 1);
        assert_eq!(v2["spec"]["metrics"], cpu80);
        assert!(
            v2["spec"].get("behavior").is_none(),
            "no behavior, no rules"
        );

        let mut v1 =
            json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3, "minReplicas": 2}});
        apply("autoscaling", "horizontalpodautoscalers", &mut v1);
        assert_eq!(
            v1["spec"],
            json!({"maxReplicas": 3, "minReplicas": 2}),
            "v1 has no metrics to default"
        );

        let mut partial = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}});
        apply("autoscaling", "horizontalpodautoscalers", &mut partial);
        assert_eq!(
            partial["spec"]["behavior"],
            json!({
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max", "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
            })
        );
    }

    #[test]
    fn deployment_gets_upstreams_defaults() {
        let mut d = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}}});
        apply("apps", "deployments", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert!(
            pod.get("serviceAccountName").is_none(),
            "admission defaults are for pods only"
        );
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "x"}]}});
        apply("", "pods", &mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        let cases = [
            ("untagged", "nginx", "Always"),
            ("latest", "nginx:latest", "Always"),
            ("pinned", "nginx:1.25", "IfNotPresent"),
            ("registry_port", "localhost:5000/app", "Always"),
            ("digest", "nginx@sha256:abc", "IfNotPresent"),
        ];
        for (name, image, want) in cases {
            let mut c = json!({"name": "c", "image": image});
            container(c.as_object_mut().unwrap());
            assert_eq!(c["imagePullPolicy"], want, "{name}");
        }
    }

    #[test]
    fn job_and_service_defaults() {
        let mut j = json!({"spec": {"template": {"spec": {"containers": []}}}});
        apply("batch", "jobs", &mut j);
        assert_eq!(
            (
                j["spec"]["completions"].clone(),
                j["spec"]["parallelism"].clone(),
                j["spec"]["backoffLimit"].clone()
            ),
            (json!(1), json!(1), json!(6))
        );
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "services", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
