use serde_json::json;

use super::*;

fn pod(resources: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "busybox", "resources": resources}]}})
}

#[test]
fn container_defaults_fill_only_what_a_container_leaves_out() {
    let item = json!({"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}});
    let cases = [
        (
            "an empty container gets every default",
            json!({}),
            json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}),
            Some("LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app"),
        ),
        (
            "a stated limit is also the request and is kept",
            json!({"limits": {"cpu": "2"}}),
            json!({"requests": {"cpu": "2", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}}),
            Some("LimitRanger plugin set: memory request for container app; memory limit for container app"),
        ),
        (
            "a fully stated container is left alone",
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
            json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
            None,
        ),
    ];
    for (name, resources, want, annotation) in cases {
        let mut p = pod(resources);
        default_pod(&mut p, std::slice::from_ref(&item));
        assert_eq!(p["spec"]["containers"][0]["resources"], want, "{name}");
        assert_eq!(
            p.pointer("/metadata/annotations/kubernetes.io~1limit-ranger")
                .and_then(Value::as_str),
            annotation,
            "{name}"
        );
    }
}

#[test]
fn a_max_alone_becomes_the_default_limit_and_request() {
    let item = json!({"type": "Container", "max": {"memory": "1Gi"}, "min": {"cpu": "50m"}});
    let mut p = pod(json!({}));
    default_pod(&mut p, &[item]);
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "50m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})
    );
}

#[test]
fn violations_use_upstreams_messages() {
    let cases = [
        (
            "container below min",
            Subject::Pod,
            json!({"type": "Container", "min": {"cpu": "100m"}}),
            pod(json!({"requests": {"cpu": "50m"}})),
            vec!["minimum cpu usage per Container is 100m, but request is 50m"],
        ),
        (
            "container without a request under a min",
            Subject::Pod,
            json!({"type": "Container", "min": {"memory": "64Mi"}}),
            pod(json!({})),
            vec!["minimum memory usage per Container is 64Mi.  No request is specified"],
        ),
        (
            "container above max",
            Subject::Pod,
            json!({"type": "Container", "max": {"cpu": "1"}}),
            pod(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "2"}})),
            vec!["maximum cpu usage per Container is 1, but limit is 2"],
        ),
        (
            "container without a limit under a max",
            Subject::Pod,
            json!({"type": "Container", "max": {"cpu": "1"}}),
            pod(json!({"requests": {"cpu": "500m"}})),
            vec!["maximum cpu usage per Container is 1.  No limit is specified"],
        ),
        (
            "limit to request ratio",
            Subject::Pod,
            json!({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}),
            pod(json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "400m"}})),
            vec![
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ],
        ),
        (
            "pod total above max",
            Subject::Pod,
            json!({"type": "Pod", "max": {"memory": "1Gi"}}),
            json!({"spec": {"containers": [
                {"name": "a", "resources": {"limits": {"memory": "768Mi"}}},
                {"name": "b", "resources": {"limits": {"memory": "768Mi"}}}
            ]}}),
            vec!["maximum memory usage per Pod is 1Gi, but limit is 1536Mi"],
        ),
        (
            "claim above max",
            Subject::Claim,
            json!({"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}),
            json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}}),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"],
        ),
        (
            "claim below min",
            Subject::Claim,
            json!({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}}),
            json!({"spec": {"resources": {"requests": {"storage": "500Mi"}}}}),
            vec!["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"],
        ),
        (
            "within every bound",
            Subject::Pod,
            json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}}),
            pod(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}})),
            vec![],
        ),
    ];
    for (name, subject, item, obj, want) in cases {
        assert_eq!(violations(subject, &obj, &[item]), want, "{name}");
    }
}
