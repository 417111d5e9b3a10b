//! `kubectl rollout status|history|undo|pause|resume` and `kubectl scale` against the
//! Deployment loop, as a user runs them.

mod common;

use std::time::Duration;

use common::*;
use kube::api::PostParams;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_rollout_status_history_undo_pause_and_resume_behave_as_upstream() {
    let c = start("kubectl").await;
    let mut d = deployment_manifest("web", 3, "nginx:1");
    d.metadata.annotations = Some(
        [(
            "kubernetes.io/change-cause".to_string(),
            "first".to_string(),
        )]
        .into(),
    );
    c.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let (ok, out) = kubectl(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=40s"],
    )
    .await;
    assert!(
        ok && out.contains("successfully rolled out"),
        "rollout status: {out}"
    );

    let (ok, out) = kubectl(&c, &["set", "image", "deployment/web", "c=nginx:2"]).await;
    assert!(ok, "set image: {out}");
    let (ok, out) = kubectl(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=40s"],
    )
    .await;
    assert!(
        ok && out.contains("successfully rolled out"),
        "rollout status after set image: {out}"
    );
    let (ok, history) = kubectl(&c, &["rollout", "history", "deployment/web"]).await;
    assert!(ok, "rollout history: {history}");
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<i64>().is_ok())
        .collect();
    assert_eq!(
        revisions,
        vec!["1", "2"],
        "history lists both revisions:\n{history}"
    );
    assert!(
        history.contains("first"),
        "change-cause is shown:\n{history}"
    );

    // `kubectl describe` shows upstream's scaling events.
    let (ok, described) = kubectl(&c, &["describe", "deployment/web"]).await;
    assert!(ok, "describe: {described}");
    assert!(
        described.contains("ScalingReplicaSet") && described.contains("Scaled up replica set web-"),
        "describe lists the scaling events:\n{described}"
    );
    // The first ReplicaSet was made with its replicas: a scale from 0, as upstream words it.
    let first = replica_set_of_image(&c, "nginx:1").await;
    c.wait_described(
        &["deployment", "web"],
        &[&format!("Scaled up replica set {first} from 0 to 3")],
    )
    .await;
    // The ReplicaSets record their pods: nginx:1's made three, then gave them up.
    c.wait_described(
        &["rs", &first],
        &[
            "SuccessfulCreate",
            "Created pod: web-",
            "SuccessfulDelete",
            "Deleted pod: web-",
        ],
    )
    .await;

    // Undo: kubectl copies revision 1's template back; the controller must reuse that
    // ReplicaSet as revision 3 rather than make a third one.
    let (ok, out) = kubectl(&c, &["rollout", "undo", "deployment/web"]).await;
    assert!(ok, "rollout undo: {out}");
    let (ok, out) = kubectl(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=40s"],
    )
    .await;
    assert!(ok, "rollout status after undo: {out}");
    wait_rolled_out(&c, "web", 3).await;
    eventually(
        "nginx:1 back as revision 3 on the original replicaset",
        || async {
            let summary = replica_set_summary(&c).await;
            let want = vec![("nginx:2".to_string(), 0, 2), ("nginx:1".to_string(), 3, 3)];
            if summary == want {
                Ok(())
            } else {
                Err(format!("{summary:?}"))
            }
        },
    )
    .await;
    let d = c.api::<Deployment>().get("web").await.unwrap();
    assert_eq!(
        d.metadata
            .annotations
            .unwrap()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    // As upstream: revision 1 became revision 3, so history no longer lists it.
    let (ok, history) = kubectl(&c, &["rollout", "history", "deployment/web"]).await;
    assert!(ok, "rollout history after undo: {history}");
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<i64>().is_ok())
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "history after undo:\n{history}");
    let rs1 = c
        .api::<ReplicaSet>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .map(String::as_str)
                == Some("3")
        })
        .expect("the ReplicaSet of revision 3");
    assert_eq!(
        rs1.metadata
            .annotations
            .unwrap()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1"),
        "the reused ReplicaSet remembers its earlier revision"
    );

    // Paused: a template change makes no ReplicaSet, but scaling still works.
    let (ok, out) = kubectl(&c, &["rollout", "pause", "deployment/web"]).await;
    assert!(ok, "rollout pause: {out}");
    let (ok, out) = kubectl(&c, &["set", "image", "deployment/web", "c=nginx:3"]).await;
    assert!(ok, "set image while paused: {out}");
    let (ok, out) = kubectl(&c, &["scale", "deployment/web", "--replicas=4"]).await;
    assert!(ok, "scale while paused: {out}");
    eventually(
        "the paused deployment to scale its current replicaset to 4",
        || async {
            let summary = replica_set_summary(&c).await;
            let want = vec![("nginx:2".to_string(), 0, 2), ("nginx:1".to_string(), 4, 3)];
            if summary == want {
                Ok(())
            } else {
                Err(format!("{summary:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        replica_set_summary(&c).await.len(),
        2,
        "no rollout while paused"
    );
    let d = c.api::<Deployment>().get("web").await.unwrap();
    let progressing = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));

    let (ok, out) = kubectl(&c, &["rollout", "resume", "deployment/web"]).await;
    assert!(ok, "rollout resume: {out}");
    let (ok, out) = kubectl(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=40s"],
    )
    .await;
    assert!(
        ok && out.contains("successfully rolled out"),
        "rollout status after resume: {out}"
    );
    wait_rolled_out(&c, "web", 4).await;
    let summary = replica_set_summary(&c).await;
    assert_eq!(
        summary.last(),
        Some(&("nginx:3".to_string(), 4, 4)),
        "{summary:?}"
    );
}
