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
