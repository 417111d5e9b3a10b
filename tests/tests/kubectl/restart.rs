//! A server killed with SIGKILL and started again on the same data dir and port keeps
//! every object, and its resourceVersions keep growing.

use serde_json::Value;

use crate::common::{Backend, Binary};
use crate::{path_str, Cluster, DEPLOYMENT_YAML};

fn max_resource_version(list: &Value) -> i64 {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .max()
        .unwrap()
}

async fn everything_survives_a_kill_and_restart(backend: Backend) {
    let mut c = Cluster::start(backend).await;
    let k = c.kubectl();
    k.run(&[
        "create",
        "-f",
        path_str(&c.manifest("d.yaml", DEPLOYMENT_YAML)),
    ]);
    for i in 0..5 {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{n: \"{i}\"}}\n"
        );
        k.run(&[
            "create",
            "-f",
            path_str(&c.manifest(&format!("cm-{i}.yaml"), &cm)),
        ]);
    }
    k.run(&["scale", "deployment", "web", "--replicas=2"]);
    k.run(&["delete", "configmap", "cm-0"]);
    let before: Value =
        serde_json::from_str(&k.run(&["get", "configmaps,deployments", "-o", "json"])).unwrap();
    let before_max = max_resource_version(&before);

    let server = c.server.take().unwrap();
    let (data_dir, port) = (server.data_dir.clone(), server.port);
    server.kill();
    c.server = Some(Binary::start(&data_dir, port, c.etcd.as_ref()));
    let k = c.kubectl();

    let after: Value =
        serde_json::from_str(&k.run(&["get", "configmaps,deployments", "-o", "json"])).unwrap();
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&after),
        names(&before),
        "{backend:?}: the same objects after the restart"
    );
    assert_eq!(
        after["items"], before["items"],
        "{backend:?}: byte-for-byte the same objects"
    );
    assert_eq!(
        k.run(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );

    let fresh = c.manifest(
        "fresh.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n",
    );
    k.run(&["create", "-f", path_str(&fresh)]);
    let rv: i64 = k
        .run(&[
            "get",
            "configmap",
            "fresh",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    assert!(
        rv > before_max,
        "{backend:?}: a write after the restart got resourceVersion {rv}, not above {before_max}"
    );
}

#[tokio::test]
async fn objects_survive_a_server_kill_and_restart_on_embedded_storage() {
    everything_survives_a_kill_and_restart(Backend::Embedded).await;
}

#[tokio::test]
async fn objects_survive_a_server_kill_and_restart_on_etcd() {
    everything_survives_a_kill_and_restart(Backend::Etcd).await;
}
