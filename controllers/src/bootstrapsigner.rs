//! The bootstrap signer (upstream's bootstrapsigner controller): `kube-public/cluster-info`
//! carries, beside its `kubeconfig` (the server's URL and CA, which anyone may read), a
//! detached JWS `jws-kubeconfig-<id>` of that kubeconfig for every bootstrap token that
//! may sign (`usage-bootstrap-signing`) and has not expired, so a joining node that knows
//! a token can tell the ConfigMap came from someone who knows it too.
//!
//! Upstream leaves making `cluster-info` to kubeadm; `kybern server` hands the loop the
//! URL nodes reach it at ([`ClusterInfo`]), and the loop makes the ConfigMap (again, when
//! it is deleted) from that URL and the cluster CA. Without the setting it only signs a
//! `cluster-info` someone else made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apiserver::api::pipeline::bootstrap_token as bt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;
use tracing::warn;

use crate::{Context, LoopFuture};

/// The URL nodes reach the API server at (written into `cluster-info`'s kubeconfig).
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    pub server: String,
}

/// A watch event as a change to look at; an error is none.
fn change<T>(event: Result<T, watcher::Error>) -> futures::future::Ready<Option<()>> {
    futures::future::ready(event.ok().map(|_| ()))
}

/// Even without events the loop looks again this often (a token that expires quietly
/// loses its signature).
const RESYNC: Duration = Duration::from_secs(30);

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let client = ctx.client.clone();
        let source = ctx
            .settings
            .get::<ClusterInfo>()
            .cloned()
            .zip(ctx.ca_pem.clone());
        let secrets: Api<Secret> = Api::namespaced(client.clone(), bt::NAMESPACE);
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), bt::CLUSTER_INFO_NAMESPACE);
        let token_secrets = watcher::Config::default().fields(&format!("type={}", bt::SECRET_TYPE));
        let cluster_info =
            watcher::Config::default().fields(&format!("metadata.name={}", bt::CLUSTER_INFO));
        // Only what the watches see is a change; their errors (the server unreachable)
        // are retried with back-off, not taken as changes: an error comes back at once,
        // and treating it as one made the loop spin while the server was away.
        let events = futures::stream::select(
            watcher(secrets.clone(), token_secrets)
                .default_backoff()
                .filter_map(change),
            watcher(maps.clone(), cluster_info)
                .default_backoff()
                .filter_map(change),
        );
        let ticks = futures::stream::unfold((), |()| async {
            tokio::time::sleep(RESYNC).await;
            Some(((), ()))
        });
        let mut triggers = std::pin::pin!(futures::stream::select(events, ticks).ready_chunks(64));
        while triggers.next().await.is_some() {
            if let Err(e) = sync(&secrets, &maps, source.as_ref()).await {
                warn!(error = %e, "signing cluster-info failed; trying again on the next change");
            }
        }
        Ok(())
    })
}

/// Brings `cluster-info` to what the token Secrets ask for.
async fn sync(
    secrets: &Api<Secret>,
    maps: &Api<ConfigMap>,
    source: Option<&(ClusterInfo, String)>,
) -> Result<(), kube::Error> {
    let existing = maps.get_opt(bt::CLUSTER_INFO).await?;
    let kubeconfig = match (&existing, source) {
        (Some(cm), _) => cm
            .data
            .as_ref()
            .and_then(|d| d.get(bt::CLUSTER_INFO_KUBECONFIG))
            .cloned(),
        (None, Some((info, ca))) => Some(kubeconfig(&info.server, ca)),
        (None, None) => None,
    };
    let Some(kubeconfig) = kubeconfig else {
        return Ok(());
    };
    let list = secrets
        .list(&ListParams::default().fields(&format!("type={}", bt::SECRET_TYPE)))
        .await?;
    let values: Vec<Value> = list
        .items
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect();
    let now = apiserver::object::unix_now();
    let mut want = signatures(&kubeconfig, &values, now);
    want.insert(bt::CLUSTER_INFO_KUBECONFIG.into(), kubeconfig);
    match existing {
        None => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(bt::CLUSTER_INFO.into()),
                    namespace: Some(bt::CLUSTER_INFO_NAMESPACE.into()),
                    ..Default::default()
                },
                data: Some(want),
                ..Default::default()
            };
            match maps.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(mut cm) => {
            let mut data = cm.data.clone().unwrap_or_default();
            data.retain(|k, _| !k.starts_with(bt::JWS_PREFIX));
            data.extend(want);
            if cm.data.as_ref() == Some(&data) {
                return Ok(());
            }
            cm.data = Some(data);
            maps.replace(bt::CLUSTER_INFO, &PostParams::default(), &cm)
                .await
                .map(|_| ())
        }
    }
}

/// `jws-kubeconfig-<id>` for every token Secret that may sign and has not expired at
/// `now` (upstream's `getTokens`).
pub fn signatures(kubeconfig: &str, secrets: &[Value], now: i64) -> BTreeMap<String, String> {
    secrets
        .iter()
        .filter(|s| apiserver::object::meta_str(s, "deletionTimestamp").is_none())
        .filter(|s| bt::data(s, bt::USAGE_SIGNING).as_deref() == Some("true"))
        .filter(|s| !bt::expired(s, now))
        .filter_map(bt::token_of)
        .map(|t| {
            (
                format!("{}{}", bt::JWS_PREFIX, t.id),
                bt::detached_jws(kubeconfig, &t),
            )
        })
        .collect()
}

/// The kubeconfig `cluster-info` publishes: the server and its CA, no credentials (as
/// kubeadm writes it).
pub fn kubeconfig(server: &str, ca_pem: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str, expires: Option<i64>, usages: &[&str]) -> Value {
        let token = bt::Token::parse(&format!("{id}.0123456789abcdef")).unwrap();
        bt::secret(
            &token,
            &bt::TokenOptions {
                expires,
                usages: usages.iter().map(|u| u.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn only_live_signing_tokens_sign_the_cluster_info() {
        let secrets = [
            secret("aaaaaa", None, &["signing", "authentication"]),
            secret("bbbbbb", Some(100), &["signing"]),
            secret("cccccc", Some(10_000), &["authentication"]),
            secret("dddddd", Some(10_000), &["signing"]),
        ];
        let signed = signatures("kc", &secrets, 1_000);
        let keys: Vec<&str> = signed.keys().map(String::as_str).collect();
        assert_eq!(keys, ["jws-kubeconfig-aaaaaa", "jws-kubeconfig-dddddd"]);
        let token = bt::Token::parse("aaaaaa.0123456789abcdef").unwrap();
        assert!(bt::jws_valid(
            &signed["jws-kubeconfig-aaaaaa"],
            "kc",
            &token
        ));
    }
}
