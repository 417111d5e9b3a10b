//! `kybern agent --server URL --token T --ca-cert-hash sha256:...`: a node joins with a
//! bootstrap token as kubeadm's token discovery and the kubelet's TLS bootstrap do.
//!
//! 1. `kube-public/cluster-info` is read anonymously over TLS without trusting the server
//!    yet; its `kubeconfig` must carry a `jws-kubeconfig-<id>` signature made with the
//!    token, so it came from someone who knows the token.
//! 2. Its CA must match a `--ca-cert-hash` pin (SHA-256 of the public key info), so it is
//!    the cluster the operator meant (`--unsafe-skip-ca-verification` skips this).
//! 3. With the token, over TLS checked against that CA, the node asks for a client
//!    certificate (a key made here; CN `system:node:<name>`, O `system:nodes`, signer
//!    `kubernetes.io/kube-apiserver-client-kubelet`), which the csrapproving loop approves
//!    for a token of the node group and csrsigning signs.
//! 4. A kubeconfig with that certificate is written, mode 0600, to
//!    `<agent dir>/kubelet.kubeconfig`; later starts use it and need no token.
//!
//! Nothing is written before every check passed.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use apiserver::api::pipeline::bootstrap_token::{self as bt, Token};
use base64::Engine as _;
use clap::Args;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::config::{AuthInfo, Context, Kubeconfig, NamedAuthInfo, NamedContext};
use kube::{Api, Client};

use super::NodeArgs;

/// The file a joined node keeps its credentials in, under the agent dir.
pub(crate) const KUBECONFIG: &str = "kubelet.kubeconfig";
const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// How long to wait for `cluster-info` to be signed with a new token, and for the
/// certificate to be issued.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
const CERTIFICATE_TIMEOUT: Duration = Duration::from_secs(300);
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

#[derive(Args, Clone, Debug, Default)]
pub(crate) struct JoinArgs {
    /// Join the cluster whose API server is at this URL (https://HOST:PORT) with --token;
    /// once joined, later starts use <agent-dir>/kubelet.kubeconfig and need no token.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// A bootstrap token (`kybern token create`) to join with.
    #[arg(long, requires = "server", value_name = "TOKEN")]
    pub token: Option<String>,
    /// The cluster CA's public key pin, `sha256:<hex>` (as kubeadm's
    /// --discovery-token-ca-cert-hash; printed by `kybern token create
    /// --print-join-command`); repeat for several.
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_cert_hash: Vec<String>,
    /// Join without checking the cluster CA against --ca-cert-hash (anyone who can
    /// answer for the server's address with a token's signature is trusted).
    #[arg(long)]
    pub unsafe_skip_ca_verification: bool,
    /// Join (write the kubeconfig) and exit without running the node.
    #[arg(long, requires = "server")]
    pub join_only: bool,
}

impl JoinArgs {
    pub(crate) fn wanted(&self) -> bool {
        self.server.is_some()
    }
}

/// The kubeconfig this node runs with: the one an earlier join wrote, else a new one from
/// joining with the token.
pub(crate) async fn join(args: &JoinArgs, node: &NodeArgs) -> anyhow::Result<PathBuf> {
    let path = node.dir().join(KUBECONFIG);
    if path.exists() {
        eprintln!(
            "[join] using the credentials of an earlier join in {}",
            path.display()
        );
        return Ok(path);
    }
    let server = args.server.as_deref().expect("wanted() checked --server");
    let token = args.token.as_deref().ok_or_else(|| {
        anyhow!(
            "{} does not exist: --token is needed to join",
            path.display()
        )
    })?;
    let token = Token::parse(token)
        .ok_or_else(|| anyhow!("the token is not of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}"))?;
    if args.ca_cert_hash.is_empty() && !args.unsafe_skip_ca_verification {
        bail!("--ca-cert-hash is required to check the cluster's CA (`kybern token create --print-join-command` prints it); --unsafe-skip-ca-verification joins without that check");
    }
    let node_name = node.node_name.clone().unwrap_or_else(super::host_name);
    let discovered = discover(server, &token).await?;
    let ca_pem = ca_of(&discovered)?;
    if args.unsafe_skip_ca_verification {
        eprintln!("[join] WARNING: not checking the cluster CA (--unsafe-skip-ca-verification)");
    } else {
        let pin = check_pins(&ca_pem, &args.ca_cert_hash)?;
        eprintln!("[join] the cluster CA matches {pin}");
    }
    let config = kubeconfig(
        server,
        &ca_pem,
        AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        },
        "bootstrap",
    );
    let client = client(&config).await?;
    let (cert_pem, key_pem) = certificate(&client, &node_name).await?;
    let user = format!("system:node:{node_name}");
    let config = kubeconfig(
        server,
        &ca_pem,
        AuthInfo {
            client_certificate_data: Some(b64(&cert_pem)),
            client_key_data: Some(b64(&key_pem).into()),
            ..Default::default()
        },
        &user,
    );
    write_private(&path, &serde_json::to_vec_pretty(&config)?)?;
    eprintln!("[join] joined as {user}; credentials in {}", path.display());
    Ok(path)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `cluster-info`'s kubeconfig, checked against the token's signature. The server is not
/// trusted yet, so its certificate is not checked here.
async fn discover(server: &str, token: &Token) -> anyhow::Result<String> {
    let url = server
        .parse()
        .with_context(|| format!("--server {server} is not a URL"))?;
    let mut config = kube::Config::new(url);
    config.accept_invalid_certs = true;
    config.default_retry = false;
    let maps: Api<ConfigMap> =
        Api::namespaced(Client::try_from(config)?, bt::CLUSTER_INFO_NAMESPACE);
    eprintln!(
        "[join] reading {}/{} from {server} (not trusted yet)",
        bt::CLUSTER_INFO_NAMESPACE,
        bt::CLUSTER_INFO
    );
    let started = Instant::now();
    let mut said = Instant::now();
    let key = format!("{}{}", bt::JWS_PREFIX, token.id);
    loop {
        // A server that has just started may not have made cluster-info yet.
        let cm = match maps.get(bt::CLUSTER_INFO).await {
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            other => Some(other.with_context(|| {
                format!(
                    "reading {}/{} from {server}",
                    bt::CLUSTER_INFO_NAMESPACE,
                    bt::CLUSTER_INFO
                )
            })?),
        };
        let data = cm.and_then(|cm| cm.data).unwrap_or_default();
        let kubeconfig = data.get(bt::CLUSTER_INFO_KUBECONFIG);
        if let Some((jws, kubeconfig)) = data.get(&key).zip(kubeconfig) {
            if !bt::jws_valid(jws, kubeconfig, token) {
                bail!("{}'s signature for token id {:?} was not made with this token: a wrong token, or a server that is not the cluster's", bt::CLUSTER_INFO, token.id);
            }
            eprintln!("[join] {} is signed with the token", bt::CLUSTER_INFO);
            return Ok(kubeconfig.clone());
        }
        if started.elapsed() >= DISCOVERY_TIMEOUT {
            bail!("{} has no signature for token id {:?}: the token is not valid for this cluster or has expired; `kybern token create` on the server makes a new one", bt::CLUSTER_INFO, token.id);
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            eprintln!(
                "[join] waiting for {} to be signed with token id {:?}",
                bt::CLUSTER_INFO,
                token.id
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The CA (PEM) of the first cluster of `cluster-info`'s kubeconfig.
fn ca_of(kubeconfig: &str) -> anyhow::Result<String> {
    let parsed = Kubeconfig::from_yaml(kubeconfig).context("reading cluster-info's kubeconfig")?;
    let data = parsed
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .ok_or_else(|| anyhow!("cluster-info's kubeconfig has no CA"))?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .context("cluster-info's CA is not base64")?;
    String::from_utf8(pem).context("cluster-info's CA is not PEM")
}

/// The pin that matches one of the CA's certificates, or why none does.
fn check_pins(ca_pem: &str, pins: &[String]) -> anyhow::Result<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let hashes: Vec<String> = ca_pem
        .split_inclusive(END)
        .filter(|b| b.contains(END))
        .filter_map(bt::ca_cert_hash)
        .collect();
    for pin in pins {
        let pin = pin.trim().to_ascii_lowercase();
        if !pin.starts_with("sha256:") {
            bail!("--ca-cert-hash {pin:?} must be of the form sha256:<hex>");
        }
        if hashes.contains(&pin) {
            return Ok(pin);
        }
    }
    bail!(
        "refusing to join: the cluster CA's public key {} matches no --ca-cert-hash ({})",
        hashes.join(", "),
        pins.join(", ")
    )
}

/// A kubeconfig for `server` trusting `ca_pem` with `auth` as user `user`.
fn kubeconfig(server: &str, ca_pem: &str, auth: AuthInfo, user: &str) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![kube::config::NamedCluster {
            name: "kybern".into(),
            cluster: Some(kube::config::Cluster {
                server: Some(server.into()),
                certificate_authority_data: Some(b64(ca_pem)),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.into(),
            auth_info: Some(auth),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: "kybern".into(),
            context: Some(Context {
                cluster: "kybern".into(),
                user: Some(user.into()),
                ..Default::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("kybern".into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Default::default()
    }
}

async fn client(config: &Kubeconfig) -> anyhow::Result<Client> {
    let mut config =
        kube::Config::from_custom_kubeconfig(config.clone(), &Default::default()).await?;
    controllers::runtime::set_user_agent(&mut config, super::USER_AGENT);
    Ok(Client::try_from(config)?)
}

/// This node's client certificate and key (PEM), through a CertificateSigningRequest.
async fn certificate(client: &Client, node_name: &str) -> anyhow::Result<(String, String)> {
    let (request, key) = agent::nodeapi::cert::node_request(node_name, Vec::new())?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = api
        .create(&Default::default(), &csr)
        .await
        .context("asking for this node's client certificate")?;
    let name = created.metadata.name.unwrap_or_default();
    eprintln!("[join] asked for a client certificate for system:node:{node_name} (CertificateSigningRequest {name}); waiting for it to be approved and signed");
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let status = api.get(&name).await?.status.unwrap_or_default();
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            eprintln!("[join] got the client certificate");
            return Ok((String::from_utf8(cert.0)?, key.serialize_pem()));
        }
        let refused = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True");
        if let Some(c) = refused {
            bail!(
                "CertificateSigningRequest {name} was {}: {}",
                c.type_.to_lowercase(),
                c.message.clone().unwrap_or_default()
            );
        }
        if started.elapsed() >= CERTIFICATE_TIMEOUT {
            bail!("CertificateSigningRequest {name} was not signed within {CERTIFICATE_TIMEOUT:?}: is the token in group {} and are the csrapproving and csrsigning loops running? `kubectl certificate approve {name}` approves it by hand", bt::DEFAULT_NODE_GROUP);
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            eprintln!(
                "[join] still waiting for CertificateSigningRequest {name} ({:?})",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Writes `bytes` to `path` readable by its owner only, atomically (temp file + rename).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_accepted_only_with_its_own_pin() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["ca".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let pin = bt::ca_cert_hash(&ca).unwrap();
        let other = format!("sha256:{}", "0".repeat(64));
        let cases = [
            ("its pin", vec![pin.clone()], true),
            (
                "its pin in upper case",
                vec![pin.to_uppercase().replace("SHA256", "sha256")],
                true,
            ),
            ("one of several", vec![other.clone(), pin.clone()], true),
            ("another pin", vec![other], false),
            (
                "no prefix",
                vec![pin.trim_start_matches("sha256:").to_string()],
                false,
            ),
        ];
        for (name, pins, ok) in cases {
            assert_eq!(check_pins(&ca, &pins).is_ok(), ok, "{name}");
        }
    }
}
