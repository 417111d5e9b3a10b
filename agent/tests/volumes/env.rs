//! Container env from every source, service variables included.

use super::*;

#[tokio::test]
async fn container_env_resolves_every_source_in_kubelet_order() {
    let cluster = cluster().await;
    let host = Host::new(&cluster.client);
    create::<ConfigMap>(
        &cluster.client,
        json!({ "metadata": { "name": "env" }, "data": { "MODE": "prod", "LEVEL": "3" } }),
    )
    .await;
    create::<Secret>(
        &cluster.client,
        json!({ "metadata": { "name": "env" }, "data": { "TOKEN": "dG9r" } }),
    )
    .await;
    create::<Service>(
        &cluster.client,
        json!({ "metadata": { "name": "web" }, "spec": { "clusterIP": "10.43.0.20", "ports": [{ "port": 8080 }] } }),
    )
    .await;
    // The apiserver itself keeps `kubernetes` (10.43.0.1, 443 named https) in `default`.
    let pod = pod(
        "u-env",
        json!({
            "nodeName": "n1", "serviceAccountName": "builder",
            "containers": [{
                "name": "app", "image": "busybox",
                "resources": { "limits": { "cpu": "500m", "memory": "64Mi" } },
                "envFrom": [
                    { "configMapRef": { "name": "env" } },
                    { "prefix": "S_", "secretRef": { "name": "env" } },
                    { "configMapRef": { "name": "absent", "optional": true } },
                ],
                "env": [
                    { "name": "MODE", "value": "dev" },
                { "name": "WEB", "value": "$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)" },
                    { "name": "URL", "value": "http://$(MODE):$(PORT)/$(LEVEL)$$(LEVEL)" },
                    { "name": "FROM_KEY", "valueFrom": { "configMapKeyRef": { "name": "env", "key": "LEVEL" } } },
                    { "name": "SECRET", "valueFrom": { "secretKeyRef": { "name": "env", "key": "TOKEN" } } },
                    { "name": "SKIPPED", "valueFrom": { "secretKeyRef": { "name": "env", "key": "nope", "optional": true } } },
                    { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "UID", "valueFrom": { "fieldRef": { "fieldPath": "metadata.uid" } } },
                    { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                    { "name": "OWNER", "valueFrom": { "fieldRef": { "fieldPath": "metadata.annotations['owner']" } } },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "SA", "valueFrom": { "fieldRef": { "fieldPath": "spec.serviceAccountName" } } },
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "POD_IPS", "valueFrom": { "fieldRef": { "fieldPath": "status.podIPs" } } },
                    { "name": "HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
                    { "name": "CPU_M", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu", "divisor": "1m" } } },
                    { "name": "MEM_MI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                ],
            }],
        }),
    );
    let env = volumes::resolve_container_env(&host.host, &pod, &container(&pod, "app"))
        .await
        .expect("the env");
    let get = |name: &str| {
        env.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let expected = [
        ("MODE", Some("dev")),
        ("LEVEL", Some("3")),
        ("S_TOKEN", Some("tok")),
        ("URL", Some("http://dev:$(PORT)/3$(LEVEL)")),
        ("FROM_KEY", Some("3")),
        ("SECRET", Some("tok")),
        ("SKIPPED", None),
        ("POD", Some("pod-u-env")),
        ("NS", Some("default")),
        ("UID", Some("u-env")),
        ("APP", Some("web")),
        ("OWNER", Some("team \"a\"")),
        ("NODE", Some("n1")),
        ("SA", Some("builder")),
        ("POD_IP", Some("10.42.0.7")),
        ("POD_IPS", Some("10.42.0.7")),
        ("HOST_IP", Some("192.168.5.1")),
        ("CPU_M", Some("500")),
        ("MEM_MI", Some("64")),
        ("WEB", Some("10.43.0.20:8080")),
        ("WEB_SERVICE_HOST", Some("10.43.0.20")),
        ("WEB_PORT_8080_TCP_ADDR", Some("10.43.0.20")),
    ];
    for (name, want) in expected {
        assert_eq!(get(name), want, "{name}");
    }
    assert_eq!(
        env.vars.iter().filter(|(n, _)| n == "MODE").count(),
        1,
        "a later entry replaces an earlier one"
    );
    // The API server refuses a ConfigMap or Secret key that is not a valid config key
    // ('1bad=key'), as upstream does, and every valid one is a valid relaxed variable name,
    // so nothing is skipped here (the name rule is `accepts_env_names_as_relaxed_validation`).
    assert!(env.invalid_names.is_empty(), "{:?}", env.invalid_names);
    let strings = volumes::container_env(&host.host, &pod, &container(&pod, "app"))
        .await
        .unwrap();
    assert!(strings.contains(&"MODE=dev".to_string()), "{strings:?}");

    // A limit that is not set defaults to the node's allocatable amount.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "n1" } })).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "allocatable": { "cpu": "4", "memory": "8Gi" } } })),
        )
        .await
        .expect("node status");
    let unlimited = self::pod(
        "u-env2",
        json!({
            "enableServiceLinks": false,
            "containers": [{ "name": "app", "image": "busybox", "env": [
                { "name": "CPUS", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu" } } },
                { "name": "MEM_GI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Gi" } } },
            ]}],
        }),
    );
    let env = volumes::container_env(&host.host, &unlimited, &container(&unlimited, "app"))
        .await
        .expect("env");
    assert_eq!(env[..2], ["CPUS=4", "MEM_GI=8"]);
    assert!(
        env.contains(&"KUBERNETES_SERVICE_HOST=10.43.0.1".to_string()),
        "always: {env:?}"
    );
    assert!(
        env.contains(&"KUBERNETES_SERVICE_PORT_HTTPS=443".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.starts_with("WEB_")),
        "no links without enableServiceLinks: {env:?}"
    );

    let failures = [
        (
            "missing configmap",
            json!({ "configMapKeyRef": { "name": "absent", "key": "k" } }),
            "configmap \"absent\" not found",
        ),
        (
            "missing secret",
            json!({ "secretKeyRef": { "name": "absent", "key": "k" } }),
            "secret \"absent\" not found",
        ),
        (
            "missing configmap key",
            json!({ "configMapKeyRef": { "name": "env", "key": "k" } }),
            "couldn't find key k in ConfigMap default/env",
        ),
        (
            "missing secret key",
            json!({ "secretKeyRef": { "name": "env", "key": "k" } }),
            "couldn't find key k in Secret default/env",
        ),
    ];
    for (name, value_from, message) in failures {
        let p = self::pod(
            "u-env3",
            json!({
                "containers": [{ "name": "app", "image": "busybox", "env": [{ "name": "X", "valueFrom": value_from }] }],
            }),
        );
        let err = volumes::container_env(&host.host, &p, &container(&p, "app"))
            .await
            .expect_err(name);
        assert_eq!(
            (err.reason, err.message.as_str()),
            ("CreateContainerConfigError", message),
            "{name}"
        );
    }
}
