//! kubectl's generators (`create configmap/secret/deployment/job/cronjob/namespace`, which
//! send protobuf), `explain`, and the verbs that edit a Deployment in place.

use crate::common::{Backend, Kubectl};
use crate::{path_str, Cluster, DEPLOYMENT_YAML};

fn get(k: &Kubectl, what: &str, jsonpath: &str) -> String {
    k.run(&["get", what, "-o", &format!("jsonpath={jsonpath}")])
}

#[tokio::test]
async fn kubectl_create_generators_create_what_they_say() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "create",
                "configmap",
                "lit",
                "--from-literal=k=v",
                "--from-literal=x=y",
            ],
            "configmap/lit created",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "sec",
                "--from-literal=password=hunter2",
            ],
            "secret/sec created",
        ),
        (
            &[
                "create",
                "deployment",
                "dep",
                "--image=nginx:1.27",
                "--replicas=2",
            ],
            "deployment.apps/dep created",
        ),
        (
            &["create", "job", "jb", "--image=busybox", "--", "echo", "hi"],
            "job.batch/jb created",
        ),
        (
            &[
                "create",
                "cronjob",
                "cj",
                "--image=busybox",
                "--schedule=*/5 * * * *",
                "--",
                "echo",
                "hi",
            ],
            "cronjob.batch/cj created",
        ),
        (
            &["create", "namespace", "team-a"],
            "namespace/team-a created",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(k.run(args).trim(), expected, "kubectl {}", args.join(" "));
    }

    assert_eq!(get(&k, "configmap/lit", "{.data}"), r#"{"k":"v","x":"y"}"#);
    // "hunter2" in base64.
    assert_eq!(
        get(&k, "secret/sec", "{.type} {.data.password}"),
        "Opaque aHVudGVyMg=="
    );
    assert_eq!(
        get(&k, "deployment/dep", "{.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.selector.matchLabels.app}"),
        "2 nginx:1.27 dep"
    );
    assert_eq!(
        get(&k, "job/jb", "{.spec.template.spec.containers[0].command}"),
        r#"["echo","hi"]"#
    );
    assert_eq!(
        get(&k, "job/jb", "{.spec.template.spec.restartPolicy}"),
        "Never",
        "kubectl create job asks for Never"
    );
    assert_eq!(get(&k, "cronjob/cj", "{.spec.schedule}"), "*/5 * * * *");
    assert_eq!(get(&k, "namespace/team-a", "{.status.phase}"), "Active");
}

#[tokio::test]
async fn kubectl_explain_prints_a_fields_description() {
    let c = Cluster::start(Backend::Embedded).await;
    let out = c.kubectl().run(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(
        out.contains("The deployment strategy to use to replace existing pods with new ones."),
        "{out}"
    );
    assert!(
        out.contains("rollingUpdate") && out.contains("type"),
        "{out}"
    );
}

#[tokio::test]
async fn kubectl_edit_rollout_restart_and_set_image_change_a_deployment() {
    let c = Cluster::start(Backend::Embedded).await;
    let k = c.kubectl();
    let with_sidecar = DEPLOYMENT_YAML.replace(
        "        image: busybox\n",
        "        image: busybox\n      - name: side\n        image: nginx:1.27\n",
    );
    k.run(&[
        "create",
        "-f",
        path_str(&c.manifest("web.yaml", &with_sidecar)),
    ]);

    // The editor is a script, as in CI: kubectl hands it the object's YAML file.
    let out = k
        .command()
        .args(["edit", "deployment/web"])
        .env("KUBE_EDITOR", "sed -i s/replicas:\\ 1/replicas:\\ 4/")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(get(&k, "deployment/web", "{.spec.replicas}"), "4");

    assert_eq!(
        k.run(&["rollout", "restart", "deployment/web"]).trim(),
        "deployment.apps/web restarted"
    );
    let restarted_at = get(
        &k,
        "deployment/web",
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert!(
        restarted_at.ends_with('Z') && restarted_at.contains('T'),
        "{restarted_at:?}"
    );

    assert_eq!(
        k.run(&["set", "image", "deployment/web", "main=busybox:2"])
            .trim(),
        "deployment.apps/web image updated"
    );
    assert_eq!(
        get(
            &k,
            "deployment/web",
            "{.spec.template.spec.containers[*].image}"
        ),
        "busybox:2 nginx:1.27",
        "only the named container changes"
    );
    assert_eq!(get(&k, "deployment/web", "{.spec.replicas}"), "4");
}
