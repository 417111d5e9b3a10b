//! Clients that are not the admin: one presenting a bearer token, one presenting nothing
//! (the anonymous user), built from a server's kubeconfig so they trust its CA.

use std::path::Path;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::Client;

async fn config_without_credentials(kubeconfig: &Path) -> kube::Config {
    let file = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    config.auth_info = AuthInfo::default();
    config
}

/// A client that sends `Authorization: Bearer <token>` and no client certificate.
pub async fn client_with_token(kubeconfig: &Path, token: &str) -> Client {
    let mut config = config_without_credentials(kubeconfig).await;
    config.headers.push((
        http::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    ));
    config.default_retry = false;
    Client::try_from(config).expect("building a token client")
}

/// A client that presents no credentials at all.
pub async fn anonymous_client(kubeconfig: &Path) -> Client {
    let mut config = config_without_credentials(kubeconfig).await;
    config.default_retry = false;
    Client::try_from(config).expect("building an anonymous client")
}

/// kubectl as the bearer of `token` (no client certificate), through a kubeconfig written
/// into `dir` that trusts the same server as `admin_kubeconfig`.
pub fn kubectl_with_token(admin_kubeconfig: &Path, token: &str, dir: &Path) -> crate::Kubectl {
    let mut file = Kubeconfig::read_from(admin_kubeconfig).expect("reading the kubeconfig");
    for named in &mut file.auth_infos {
        named.auth_info = Some(AuthInfo {
            token: Some(token.to_string().into()),
            ..AuthInfo::default()
        });
    }
    let path = dir.join("token.kubeconfig");
    let json = serde_json::to_vec(&file).expect("a kubeconfig serializes");
    std::fs::write(&path, json).expect("writing the token kubeconfig");
    crate::Kubectl {
        kubeconfig: path,
        cache_dir: dir.join("kubectl-cache"),
        namespace: None,
    }
}
