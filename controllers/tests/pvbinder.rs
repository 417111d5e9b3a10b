//! The PersistentVolume binder with hand-made volumes: a claim binds to the smallest
//! volume that fits, both sides say so, and when the claim goes the volume follows its
//! reclaim policy; the protection finalizers keep a claim while a pod uses it.

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use kybern_testkit::{eventually, Cluster};
use serde_json::json;

fn volume(name: &str, size: &str, policy: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual", "persistentVolumeReclaimPolicy": policy,
            "hostPath": {"path": format!("/tmp/kybern-test-pv/{name}")},
        },
    }))
    .unwrap()
}

fn claim(name: &str, size: &str, volume_name: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
            "resources": {"requests": {"storage": size}}, "volumeName": volume_name,
        },
    }))
    .unwrap()
}

fn phase_of_volume(pv: &PersistentVolume) -> Option<String> {
    pv.status.as_ref()?.phase.clone()
}

async fn volume_phase(volumes: &Api<PersistentVolume>, name: &str) -> Result<String, String> {
    match volumes.get_opt(name).await {
        Ok(Some(pv)) => Ok(phase_of_volume(&pv).unwrap_or_default()),
        Ok(None) => Ok("deleted".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_volumes_bind_to_claims_and_follow_their_reclaim_policy() {
    let c = Cluster::start("pvbind", &["persistentvolume-binder"], 0).await;
    let volumes: Api<PersistentVolume> = Api::all(c.client.clone());
    for pv in [
        volume("big", "10Gi", "Retain"),
        volume("small", "2Gi", "Retain"),
        volume("deleted-after", "1Gi", "Delete"),
        volume("recycled", "1Gi", "Recycle"),
    ] {
        volumes.create(&PostParams::default(), &pv).await.unwrap();
    }
    let claims = c.api::<PersistentVolumeClaim>();
    for pvc in [
        claim("data", "1500Mi", None),
        claim("scratch", "1Gi", Some("deleted-after")),
        claim("old", "1Gi", Some("recycled")),
    ] {
        claims.create(&PostParams::default(), &pvc).await.unwrap();
    }

    eventually("the claims bound", || async {
        let data = claims.get("data").await.map_err(|e| e.to_string())?;
        let status = data.status.clone().unwrap_or_default();
        let bound = status.phase.as_deref() == Some("Bound")
            && data.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some("small");
        let others = futures::future::join_all(["scratch", "old"].map(|n| claims.get(n))).await;
        let others_bound = others.iter().all(|r| {
            r.as_ref()
                .is_ok_and(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        });
        (bound && others_bound)
            .then_some(())
            .ok_or(format!("{status:?}"))
    })
    .await;
    let data = claims.get("data").await.unwrap();
    let status = data.status.clone().unwrap();
    assert_eq!(
        status.capacity.unwrap()["storage"].0,
        "2Gi",
        "the volume's capacity"
    );
    assert_eq!(status.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(
        data.annotations()
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );
    assert!(data
        .finalizers()
        .iter()
        .any(|f| f == "kubernetes.io/pvc-protection"));
    eventually("the chosen volume Bound, the others Available", || async {
        let got = (
            volume_phase(&volumes, "small").await?,
            volume_phase(&volumes, "big").await?,
        );
        (got == ("Bound".into(), "Available".into()))
            .then_some(())
            .ok_or(format!("{got:?}"))
    })
    .await;
    let small = volumes.get("small").await.unwrap();
    let claim_ref = small.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(claim_ref.uid, data.uid());
    assert_eq!(
        small
            .annotations()
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    assert!(small
        .finalizers()
        .iter()
        .any(|f| f == "kubernetes.io/pv-protection"));

    for name in ["data", "scratch", "old"] {
        claims.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("each volume reclaimed by its policy", || async {
        let got = (
            volume_phase(&volumes, "small").await?,
            volume_phase(&volumes, "deleted-after").await?,
            volume_phase(&volumes, "recycled").await?,
        );
        let want = (
            "Released".to_string(),
            "deleted".to_string(),
            "Failed".to_string(),
        );
        (got == want).then_some(()).ok_or(format!("{got:?}"))
    })
    .await;
    let recycled = volumes.get("recycled").await.unwrap();
    assert_eq!(
        recycled.status.unwrap().message.as_deref(),
        Some("No recycler plugin found for the volume!")
    );
    let events = Api::<Event>::all(c.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("VolumeFailedRecycle")),
        "a VolumeFailedRecycle event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_by_a_pod_stays_until_the_pod_is_gone() {
    let c = Cluster::start("pvcprotect", &["persistentvolume-binder"], 0).await;
    let claims = c.api::<PersistentVolumeClaim>();
    claims
        .create(&PostParams::default(), &claim("data", "1Gi", None))
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "user"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }))
    .unwrap();
    c.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    eventually("the claim protected", || async {
        let data = claims.get("data").await.map_err(|e| e.to_string())?;
        data.finalizers()
            .iter()
            .any(|f| f == "kubernetes.io/pvc-protection")
            .then_some(())
            .ok_or(format!("{:?}", data.finalizers()))
    })
    .await;
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    let data = claims.get("data").await.unwrap();
    assert!(
        data.metadata.deletion_timestamp.is_some(),
        "the claim stays, Terminating, while the pod uses it"
    );
    c.api::<Pod>()
        .delete("user", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the claim gone with the pod", || async {
        match claims.get_opt("data").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_claim_binds_to_a_volume_made_after_it() {
    let c = Cluster::start("pvlate", &["persistentvolume-binder"], 0).await;
    let claims = c.api::<PersistentVolumeClaim>();
    claims
        .create(&PostParams::default(), &claim("late", "1Gi", None))
        .await
        .unwrap();
    eventually("the claim Pending", || async {
        let got = claims.get("late").await.map_err(|e| e.to_string())?;
        let phase = got.status.and_then(|s| s.phase);
        (phase.as_deref() == Some("Pending"))
            .then_some(())
            .ok_or(format!("{phase:?}"))
    })
    .await;
    Api::<PersistentVolume>::all(c.client.clone())
        .create(
            &PostParams::default(),
            &volume("made-later", "1Gi", "Retain"),
        )
        .await
        .unwrap();
    eventually("the claim bound to the new volume", || async {
        let got = claims.get("late").await.map_err(|e| e.to_string())?;
        let name = got.spec.and_then(|s| s.volume_name);
        let phase = got.status.and_then(|s| s.phase);
        (name.as_deref() == Some("made-later") && phase.as_deref() == Some("Bound"))
            .then_some(())
            .ok_or(format!("{name:?} {phase:?}"))
    })
    .await;
}
