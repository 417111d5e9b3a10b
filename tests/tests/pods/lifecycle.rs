//! Container lifecycle as users see it through kubectl: restart back-off, OOM kills, init
//! containers in order, volumes and env from ConfigMaps and Secrets, Jobs to completion,
//! liveness restarts.

use crate::{at, pod_yaml as pod, Node, BUSYBOX, TESTSERVER};

#[test]
fn a_crashing_container_backs_off_with_growing_delays() {
    // The agent runs with a 2 s initial back-off (see Node::start_agent), doubling to 16 s.
    let node = Node::start(&[]);
    node.apply(
        "crash.yaml",
        &pod(
            "crash",
            "Always",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'exit 3']\n"),
        ),
    );
    let mut seen = Vec::new();
    for delay in ["4s", "8s"] {
        let p = node.eventually(&format!("CrashLoopBackOff with back-off {delay}"), || {
            let p = node.pod("crash");
            let msg = at(&p, "/status/containerStatuses/0/state/waiting/message");
            (at(&p, "/status/containerStatuses/0/state/waiting/reason") == "CrashLoopBackOff"
                && msg.starts_with(&format!("back-off {delay} ")))
            .then_some(p.clone())
            .ok_or(p.to_string())
        });
        seen.push(
            at(&p, "/status/containerStatuses/0/restartCount")
                .parse::<u32>()
                .unwrap(),
        );
        assert_eq!(
            at(
                &p,
                "/status/containerStatuses/0/lastState/terminated/exitCode"
            ),
            "3"
        );
        assert_eq!(
            at(
                &p,
                "/status/containerStatuses/0/lastState/terminated/reason"
            ),
            "Error"
        );
        assert_eq!(at(&p, "/status/phase"), "Running");
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "restart counts grow: {seen:?}"
    );
    let events = node.run(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crash",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("BackOff"), "{events}");
}

#[test]
fn a_memory_hog_is_oom_killed() {
    let node = Node::start(&[]);
    node.apply(
        "hog.yaml",
        &pod(
            "hog",
            "Never",
            &format!("  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'tail /dev/zero']\n    resources:\n      limits: {{memory: 32Mi}}\n"),
        ),
    );
    let p = node.eventually("the pod Failed", || {
        let p = node.pod("hog");
        (at(&p, "/status/phase") == "Failed")
            .then_some(p.clone())
            .ok_or(p.to_string())
    });
    assert_eq!(
        at(&p, "/status/containerStatuses/0/state/terminated/reason"),
        "OOMKilled",
        "{p}"
    );
    assert_eq!(
        at(&p, "/status/containerStatuses/0/state/terminated/exitCode"),
        "137"
    );
    assert_eq!(at(&p, "/status/qosClass"), "Burstable");
}

#[test]
fn init_containers_run_in_order_and_configmaps_and_secrets_reach_the_container() {
    let node = Node::start(&[]);
    node.run(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
        "--from-literal=color=blue",
    ]);
    node.run(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=password=s3cret",
    ]);
    node.apply(
        "inputs.yaml",
        &pod(
            "inputs",
            "Never",
            &format!(
                r#"  volumes:
  - name: work
    emptyDir: {{}}
  - name: cfg
    configMap: {{name: cfg}}
  - name: sec
    secret: {{secretName: sec}}
  initContainers:
  - name: first
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo one >> /work/order']
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo two >> /work/order']
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'cat /work/order /etc/cfg/greeting /etc/sec/password > /dev/termination-log; echo " $GREETING $PASSWORD $POD_NAME" >> /dev/termination-log']
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: sec, mountPath: /etc/sec}}
"#
            ),
        ),
    );
    let p = node.eventually("the pod Succeeded", || {
        let p = node.pod("inputs");
        (at(&p, "/status/phase") == "Succeeded")
            .then_some(p.clone())
            .ok_or(p.to_string())
    });
    assert_eq!(
        at(&p, "/status/containerStatuses/0/state/terminated/message"),
        "one\ntwo\nhellos3cret hello s3cret inputs\n",
        "{p}"
    );
    for i in 0..2 {
        assert_eq!(
            at(
                &p,
                &format!("/status/initContainerStatuses/{i}/state/terminated/reason")
            ),
            "Completed"
        );
    }
    let init_done = |i: usize| {
        at(
            &p,
            &format!("/status/initContainerStatuses/{i}/state/terminated/finishedAt"),
        )
    };
    let second_start = at(
        &p,
        "/status/initContainerStatuses/1/state/terminated/startedAt",
    );
    assert!(
        init_done(0) <= second_start,
        "the second init container starts after the first ends"
    );
}

#[test]
fn a_job_runs_to_completion() {
    let node = Node::start(&[]);
    node.apply(
        "job.yaml",
        &format!(
            r#"apiVersion: batch/v1
kind: Job
metadata:
  name: count
spec:
  completions: 2
  parallelism: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {BUSYBOX}
        imagePullPolicy: IfNotPresent
        command: [sh, -c, 'echo done']
"#
        ),
    );
    node.run(&[
        "wait",
        "--for=condition=Complete",
        "job/count",
        "--timeout=120s",
    ]);
    let job: serde_json::Value =
        serde_json::from_str(&node.run(&["get", "job", "count", "-o", "json"])).unwrap();
    assert_eq!(at(&job, "/status/succeeded"), "2");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let node = Node::start(&[]);
    node.apply(
        "live.yaml",
        &pod(
            "live",
            "Always",
            &format!(
                r#"  containers:
  - name: server
    image: {TESTSERVER}
    imagePullPolicy: IfNotPresent
    livenessProbe:
      httpGet: {{path: /ready, port: 8080}}
      periodSeconds: 1
      failureThreshold: 2
"#
            ),
        ),
    );
    let p = node.eventually("the server running", || {
        let p = node.pod("live");
        (at(&p, "/status/containerStatuses/0/ready") == "true")
            .then_some(p.clone())
            .ok_or(p.to_string())
    });
    let first = at(&p, "/status/containerStatuses/0/containerID");
    let addr = format!("{}:8080", at(&p, "/status/podIP"));
    // The test server answers /ready with 503 from now on: the liveness probe fails.
    let (ok, body) = node.client().get(&node.testserver, &addr, "/ready/toggle");
    assert!(ok, "toggling readiness: {body}");
    let p = node.eventually("the container restarted", || {
        let p = node.pod("live");
        let restarted = at(&p, "/status/containerStatuses/0/restartCount") == "1"
            && !at(&p, "/status/containerStatuses/0/state/running/startedAt").is_empty()
            && at(&p, "/status/containerStatuses/0/containerID") != first;
        restarted.then_some(p.clone()).ok_or(p.to_string())
    });
    assert_ne!(
        at(
            &p,
            "/status/containerStatuses/0/lastState/terminated/finishedAt"
        ),
        "",
        "{p}"
    );
    assert_eq!(
        at(&p, "/status/podIP"),
        addr.trim_end_matches(":8080"),
        "a container restart keeps the pod's sandbox and address"
    );
    // A new process: its /ready answers 200 again, so the probe passes and it stays.
    let (ok, body) = node.client().get(&node.testserver, &addr, "/ready");
    assert!(
        ok && body.trim() == "ready",
        "the restarted server is healthy: {body}"
    );
    let events = node.run(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 503"),
        "{events}"
    );
    assert!(
        events.contains("Killing: Container server failed liveness probe, will be restarted"),
        "{events}"
    );
}

#[test]
fn a_pod_whose_host_port_is_taken_is_rejected_by_the_node() {
    let node = Node::start(&[]);
    let with_port = |name: &str| {
        pod(
            name,
            "Never",
            &format!("  nodeName: {}\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n    ports:\n    - containerPort: 8080\n      hostPort: 18080\n", node.name),
        )
    };
    node.apply("first.yaml", &with_port("first"));
    node.eventually("the first pod running", || {
        let p = node.pod("first");
        (at(&p, "/status/phase") == "Running")
            .then_some(())
            .ok_or(p.to_string())
    });
    node.apply("second.yaml", &with_port("second"));
    let p = node.eventually("the second pod Failed", || {
        let p = node.pod("second");
        (at(&p, "/status/phase") == "Failed")
            .then_some(p.clone())
            .ok_or(p.to_string())
    });
    assert_eq!(at(&p, "/status/reason"), "NodePorts", "{p}");
    assert_eq!(
        at(&p, "/status/message"),
        "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
    );
    assert_eq!(at(&node.pod("first"), "/status/phase"), "Running");
}
