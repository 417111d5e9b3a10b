//! Users other than the administrator: a client certificate from the cluster CA (CN the
//! user, O its group), a kubeconfig holding it, and a kube client and kubectl using it.

use std::path::{Path, PathBuf};

use apiserver::pki::{self, Pki};
use kube::config::Kubeconfig;
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
