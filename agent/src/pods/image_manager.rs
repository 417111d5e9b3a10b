//! A container's image, as the kubelet's image manager provides it: the pull policy
//! (`Always`, `IfNotPresent`, `Never`, defaulted from the tag as the apiserver does), pulls
//! with the pod's imagePullSecrets and their back-off, the waiting reasons and events a
//! user sees (ErrImagePull, ImagePullBackOff, ErrImageNeverPull), and image IDs.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use kube::ResourceExt;
use tokio::time::Instant;

use super::actions::Kind;
use super::events::{field_path, NORMAL, WARNING};
use super::slot::Slot;
use super::state::State;
use super::PodContext;
use crate::runtime::{ImageInfo, RegistryAuth};

/// What to do about an image before a container of it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the image the runtime holds.
    UsePresent,
    /// Pull it (again).
    Pull,
    /// Policy Never and the image is absent: the container waits in ErrImageNeverPull.
    NeverPull,
}

/// The decision for `policy` (an unknown policy pulls, as `Always`).
pub fn decide(policy: &str, present: bool) -> PullDecision {
    match (policy, present) {
        ("Never" | "IfNotPresent", true) => PullDecision::UsePresent,
        ("Never", false) => PullDecision::NeverPull,
        _ => PullDecision::Pull,
    }
}

/// The container's pull policy: its own, else the apiserver's default for its image.
pub fn pull_policy(spec: &Container) -> String {
    spec.image_pull_policy
        .clone()
        .unwrap_or_else(|| default_pull_policy(spec.image.as_deref().unwrap_or_default()).into())
}

/// `Always` for `:latest` or no tag, else `IfNotPresent`; a digest pins the image.
pub fn default_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always",
            _ => "IfNotPresent",
        }
    }
}

/// The full reference the runtime stores an image under (`docker.io/library/busybox:latest`).
pub fn normalize(image: &str) -> String {
    crate::registry::normalize(image)
}

/// The status's imageID: `<repository>@<manifest digest>`.
pub fn image_id(image: &ImageInfo) -> String {
    let repo = match image.name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image.name.as_str(),
    };
    format!("{repo}@{}", image.digest)
}

/// The slot's image per its pull policy; `Err(retry)` after setting the waiting state.
pub(super) async fn ensure_image(
    ctx: &PodContext,
    pod: &Pod,
    kind: Kind,
    slot: &mut Slot,
) -> Result<ImageInfo, Option<Duration>> {
    let fp = field_path(kind, &slot.spec.name);
    let image = slot.spec.image.clone().unwrap_or_default();
    let name = normalize(&image);
    let policy = pull_policy(&slot.spec);
    let present = match ctx.runtime.image(&name).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(image = %name, error = %e, "looking up an image");
            None
        }
    };
    match (decide(&policy, present.is_some()), present) {
        (PullDecision::UsePresent, Some(found)) => return Ok(found),
        (PullDecision::NeverPull, _) => {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            let already = matches!(&slot.rec.state, State::Waiting { reason, .. } if reason == "ErrImageNeverPull");
            slot.rec.state = State::waiting("ErrImageNeverPull", Some(msg.clone()));
            if !already {
                ctx.sink
                    .event(pod, Some(fp), WARNING, "ErrImageNeverPull", &msg)
                    .await;
            }
            return Err(Some(ctx.backoff.initial));
        }
        _ => {}
    }
    if let Err(wait) = slot.pull.attempt(&ctx.backoff, Instant::now()) {
        let was_pull_error =
            matches!(&slot.rec.state, State::Waiting { reason, .. } if reason == "ErrImagePull");
        slot.rec.state = State::waiting(
            "ImagePullBackOff",
            Some(format!("Back-off pulling image \"{image}\"")),
        );
        if was_pull_error {
            let msg = format!("Back-off pulling image \"{image}\"");
            ctx.sink.event(pod, Some(fp), NORMAL, "BackOff", &msg).await;
        }
        return Err(Some(wait));
    }
    let msg = format!("Pulling image \"{image}\"");
    ctx.sink
        .event(pod, Some(fp.clone()), NORMAL, "Pulling", &msg)
        .await;
    let auth = pull_credentials(ctx, pod, &name).await;
    let started = Instant::now();
    match ctx.runtime.pull_image(&name, auth.as_ref()).await {
        Ok(found) => {
            let took = started.elapsed().as_secs_f64();
            let msg = format!("Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting)");
            ctx.sink.event(pod, Some(fp), NORMAL, "Pulled", &msg).await;
            slot.pull.reset();
            Ok(found)
        }
        Err(e) => {
            let msg = format!("Failed to pull image \"{image}\": {e}");
            ctx.sink
                .event(pod, Some(fp.clone()), WARNING, "Failed", &msg)
                .await;
            ctx.sink
                .event(pod, Some(fp), WARNING, "Failed", "Error: ErrImagePull")
                .await;
            slot.rec.state = State::waiting("ErrImagePull", Some(msg));
            // The next pass comes halfway through the back-off and reports
            // ImagePullBackOff for the rest of it, so clients see both states in turn
            // as they do with the kubelet, whose next sync after a failed one comes
            // 10-15 s later, inside the doubled image back-off.
            Err(slot.pull.delay().map(|d| d / 2))
        }
    }
}

/// Credentials from the pod's imagePullSecrets for the image's registry.
async fn pull_credentials(ctx: &PodContext, pod: &Pod, image: &str) -> Option<RegistryAuth> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    if names.is_empty() {
        return None;
    }
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let mut secrets = Vec::new();
    for n in names {
        match api.get_opt(&n).await {
            Ok(Some(s)) => secrets.push(s),
            Ok(None) => {
                tracing::warn!(secret = %n, "imagePullSecret not found; pulling without it")
            }
            Err(e) => tracing::warn!(secret = %n, error = %e, "reading an imagePullSecret"),
        }
    }
    crate::registry::credentials_for(image, &secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_the_apiserver() {
        let rows = [
            ("no tag", "busybox", "Always"),
            ("latest", "busybox:latest", "Always"),
            ("a tag", "busybox:1.36", "IfNotPresent"),
            ("a registry port is no tag", "localhost:5000/app", "Always"),
            (
                "a registry port and latest",
                "localhost:5000/app:latest",
                "Always",
            ),
            (
                "a registry port and a tag",
                "localhost:5000/app:v1",
                "IfNotPresent",
            ),
            ("a digest", "a@sha256:00", "IfNotPresent"),
        ];
        for (name, image, want) in rows {
            assert_eq!(default_pull_policy(image), want, "{name}");
        }
    }

    #[test]
    fn a_containers_own_pull_policy_wins_over_the_default() {
        let spec = |image: &str, policy: Option<&str>| Container {
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(pull_policy(&spec("busybox", Some("Never"))), "Never");
        assert_eq!(pull_policy(&spec("busybox:1", Some("Always"))), "Always");
        assert_eq!(pull_policy(&spec("busybox:1", None)), "IfNotPresent");
        assert_eq!(pull_policy(&spec("busybox", None)), "Always");
    }

    #[test]
    fn pull_decisions_follow_the_policy() {
        use PullDecision::*;
        let rows = [
            ("Always pulls a present image again", "Always", true, Pull),
            ("Always pulls an absent image", "Always", false, Pull),
            (
                "IfNotPresent uses a present image",
                "IfNotPresent",
                true,
                UsePresent,
            ),
            (
                "IfNotPresent pulls an absent image",
                "IfNotPresent",
                false,
                Pull,
            ),
            ("Never uses a present image", "Never", true, UsePresent),
            (
                "Never never pulls an absent image",
                "Never",
                false,
                NeverPull,
            ),
        ];
        for (name, policy, present, want) in rows {
            assert_eq!(decide(policy, present), want, "{name}");
        }
    }

    #[test]
    fn references_normalize_as_docker() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(normalize("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(
            normalize("kybern.local/busybox:latest"),
            "kybern.local/busybox:latest"
        );
    }

    #[test]
    fn image_ids_name_the_repository_and_digest() {
        let image = ImageInfo {
            name: "127.0.0.1:5000/app:v1".into(),
            digest: "sha256:ab".into(),
            config: Default::default(),
        };
        assert_eq!(image_id(&image), "127.0.0.1:5000/app@sha256:ab");
    }
}
