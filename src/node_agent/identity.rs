//! The node agent's own identity when it runs beside the server (`kybern up`): a client
//! certificate for `system:node:<node name>` in `system:nodes`, issued from the cluster CA
//! in the data dir, so the Node authorizer and NodeRestriction govern the agent as they
//! govern any node (instead of it acting as `system:masters`).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `<agent dir>/kubelet.kubeconfig` for node `node_name` against `server_url`,
/// with a certificate from the CA under `data_dir`, and returns its path.
pub(crate) fn local_kubeconfig(
    data_dir: &Path,
    agent_dir: &Path,
    server_url: &str,
    node_name: &str,
) -> anyhow::Result<PathBuf> {
    let pki = apiserver::pki::ensure(data_dir, &[]).context("reading the cluster CA")?;
    let (cert, key) = pki
        .issue_client_cert(&format!("system:node:{node_name}"), &["system:nodes"])
        .context("issuing the node's client certificate")?;
    let path = agent_dir.join("kubelet.kubeconfig");
    apiserver::pki::write_kubeconfig(&path, server_url, &pki, &cert, &key)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
