//! The token controller (upstream's tokens-controller): a Secret of type
//! `kubernetes.io/service-account-token` annotated with a service account gets a legacy,
//! non-expiring token for it (`data.token`), the cluster CA (`data.ca.crt`) and its
//! namespace (`data.namespace`), and the account's uid as an annotation; one whose account
//! is gone (or has another uid) is deleted. The service-account signing key is a setting
//! ([`TokenKey`]): `kybern server` passes its own; without it the loop fills nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::ResourceExt;
use tracing::info;

use crate::{Context, LoopFuture};

pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// The key legacy tokens are signed with (the API server's service-account key).
#[derive(Clone)]
pub struct TokenKey(pub Arc<apiserver::api::TokenSigner>);

pub fn run(ctx: Arc<Context>) -> LoopFuture {
    Box::pin(async move {
        let Some(key) = ctx.settings.get::<TokenKey>().cloned() else {
            info!(
                "no service-account signing key in this process: token Secrets are not filled here"
            );
            return futures::future::pending().await;
        };
        let client = ctx.client.clone();
        let state = Arc::new((client.clone(), key, ctx.ca_pem.clone()));
        crate::runtime::own_watch::run(
            Api::<Secret>::all(client),
            watcher::Config::default().fields(&format!("type={TOKEN_SECRET_TYPE}")),
            "token secret",
            reconcile,
            state,
        )
        .await;
        Ok(())
    })
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("signing a token: {0}")]
    Sign(String),
}

type State = (kube::Client, TokenKey, Option<String>);

async fn reconcile(secret: Arc<Secret>, state: Arc<State>) -> Result<Action, Error> {
    let (client, TokenKey(key), ca) = &*state;
    if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE)
        || secret.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let ns = secret.namespace().unwrap_or_default();
    let annotations = secret.annotations();
    let Some(account_name) = annotations.get(ACCOUNT_NAME_ANNOTATION).cloned() else {
        return Ok(Action::await_change());
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = accounts.get_opt(&account_name).await?;
    let account_uid = account.as_ref().and_then(|a| a.uid());
    let wanted_uid = annotations
        .get(ACCOUNT_UID_ANNOTATION)
        .filter(|u| !u.is_empty());
    let orphaned = match (&account_uid, wanted_uid) {
        (None, _) => true,
        (Some(uid), Some(wanted)) => uid != wanted,
        _ => false,
    };
    if orphaned {
        info!(secret = %secret.name_any(), namespace = %ns, "deleting the token of a deleted service account");
        match secrets
            .delete(&secret.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    let account_uid = account_uid.unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let complete = ["token", "namespace"]
        .iter()
        .all(|k| data.get(*k).is_some_and(|v| !v.0.is_empty()))
        && (ca.is_none() || data.contains_key("ca.crt"));
    if complete && wanted_uid.is_some() {
        return Ok(Action::await_change());
    }
    let mut updated = (*secret).clone();
    let mut data: BTreeMap<String, ByteString> = data;
    if data.get("token").is_none_or(|t| t.0.is_empty()) {
        let token = key
            .sign_legacy(&ns, &account_name, &account_uid, &secret.name_any())
            .map_err(|e| Error::Sign(e.to_string()))?;
        data.insert("token".into(), ByteString(token.into_bytes()));
    }
    data.insert("namespace".into(), ByteString(ns.clone().into_bytes()));
    if let Some(ca) = ca {
        data.insert("ca.crt".into(), ByteString(ca.clone().into_bytes()));
    }
    updated.data = Some(data);
    updated
        .annotations_mut()
        .insert(ACCOUNT_UID_ANNOTATION.into(), account_uid);
    // Replace keeps the resourceVersion read: a concurrent change is a 409 and a retry.
    secrets
        .replace(&secret.name_any(), &PostParams::default(), &updated)
        .await?;
    info!(secret = %secret.name_any(), namespace = %ns, "filled a service-account token secret");
    Ok(Action::await_change())
}
