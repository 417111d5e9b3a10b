//! Users other than the administrator: a client certificate from the cluster CA (CN the
//! user, O its group) with a kubeconfig, kube client and kubectl using it; clients that
//! present a bearer token, or nothing (the anonymous user), built from a server's
//! kubeconfig so they trust its CA.

use std::path::{Path, PathBuf};

use apiserver::pki::{self, Pki};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::{client_from_kubeconfig, Kubectl};

/// One user of a test cluster.
pub struct User {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl User {
    /// A user with a certificate for `name` in `group` (at most one, as the CA issues
    /// them), for the server whose admin kubeconfig is `admin_kubeconfig` (in its data
    /// dir, where the CA's key is).
    pub async fn new(admin_kubeconfig: &Path, name: &str, group: Option<&str>) -> User {
        let kubeconfig = kubeconfig_for(admin_kubeconfig, name, group);
        let client = client_from_kubeconfig(&kubeconfig).await;
        User {
            name: name.to_string(),
            kubeconfig,
            client,
        }
    }

    /// The real kubectl as this user (its own discovery cache).
    pub fn kubectl(&self) -> Kubectl {
        Kubectl {
            kubeconfig: self.kubeconfig.clone(),
            cache_dir: self.kubeconfig.with_extension("cache"),
            namespace: None,
        }
    }
}

/// Writes a kubeconfig for `name` in `group` (a certificate from the CA of the server
/// whose admin kubeconfig is `admin_kubeconfig`) under `<data dir>/users/` and returns its
/// path; what [`User::new`] uses, for callers that start processes rather than clients
/// (e.g. an agent with a node's identity).
pub fn kubeconfig_for(admin_kubeconfig: &Path, name: &str, group: Option<&str>) -> PathBuf {
    let data_dir = admin_kubeconfig
        .parent()
        .expect("the admin kubeconfig is in the data dir");
    let read = |f: &str| {
        std::fs::read_to_string(data_dir.join("pki").join(f))
            .unwrap_or_else(|e| panic!("reading the CA's {f}: {e}"))
    };
    let ca = Pki {
        ca_cert_pem: read("ca.crt"),
        ca_key_pem: read("ca.key"),
        server_cert_pem: String::new(),
        server_key_pem: String::new(),
        admin_cert_pem: String::new(),
        admin_key_pem: String::new(),
        kubelet_client_cert_pem: String::new(),
        kubelet_client_key_pem: String::new(),
    };
    let groups: Vec<&str> = group.into_iter().collect();
    let (cert, key) = ca
        .issue_client_cert(name, &groups)
        .expect("issuing a client certificate");
    let admin = Kubeconfig::read_from(admin_kubeconfig).expect("reading the admin kubeconfig");
    let server = admin.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("the admin kubeconfig names the server");
    let file: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let kubeconfig = data_dir.join("users").join(format!("{file}.kubeconfig"));
    pki::write_kubeconfig(&kubeconfig, &server, &ca, &cert, &key)
        .expect("writing the user's kubeconfig");
    kubeconfig
}

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
