//! Cluster PKI: creates and persists the kybern CA, the API server's serving certificate and the admin client certificate, issues further client certificates, and writes kubeconfigs.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::extensions::GeneralName;

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "kybern-ca";
/// Common name (user) of the admin client certificate.
pub const ADMIN_USER: &str = "kybern-admin";
/// Organization (group) of the admin client certificate.
pub const ADMIN_GROUP: &str = "system:masters";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
const LEAF_VALIDITY: Duration = Duration::from_secs(730 * 24 * 60 * 60);
/// Hosts the serving certificate always covers (besides the machine's hostname).
const DEFAULT_SERVER_HOSTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.43.0.1",
];

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid certificate material in {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("unsupported request: {0}")]
    Unsupported(String),
    #[error("kubeconfig serialization failed: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Result type of this module.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn invalid(what: impl Into<String>, reason: impl fmt::Display) -> Error {
    Error::Invalid { what: what.into(), reason: reason.to_string() }
}

/// PEM-encoded cluster credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("server_cert_pem", &self.server_cert_pem)
            .field("admin_cert_pem", &self.admin_cert_pem)
            .finish_non_exhaustive()
    }
}

/// Loads the PKI under `dir/pki/`, creating whatever is missing.
///
/// The CA is never regenerated once it exists. The serving certificate is reissued when one
/// of the required hosts (defaults, hostname, `server_hosts`) is not among its SANs or when it
/// does not match its key; the admin certificate is reissued when missing or mismatched.
/// If the CA is (re)created, both leaf certificates are reissued.
pub fn ensure(dir: &Path, server_hosts: &[String]) -> Result<Pki> {
    let pki_dir = dir.join("pki");
    fs::create_dir_all(&pki_dir).map_err(io_err(&pki_dir))?;
    fs::set_permissions(&pki_dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&pki_dir))?;
    let file = |name: &str| pki_dir.join(name);

    let (ca_cert_pem, ca_key_pem, ca_created) = match (read_opt(&file("ca.crt"))?, read_opt(&file("ca.key"))?) {
        (Some(cert), Some(key)) => {
            check_pair("ca", &cert, &key)?;
            (cert, key, false)
        }
        (None, None) => {
            let (cert, key) = generate_ca()?;
            write_atomic(&file("ca.key"), key.as_bytes(), 0o600)?;
            write_atomic(&file("ca.crt"), cert.as_bytes(), 0o644)?;
            (cert, key, true)
        }
        _ => {
            return Err(invalid(
                pki_dir.display().to_string(),
                "exactly one of ca.crt and ca.key exists; refusing to replace the CA",
            ))
        }
    };
    let mut pki = Pki {
        ca_cert_pem,
        ca_key_pem,
        server_cert_pem: String::new(),
        server_key_pem: String::new(),
        admin_cert_pem: String::new(),
        admin_key_pem: String::new(),
    };

    let hosts = required_hosts(server_hosts);
    let existing_server = load_leaf(&file("server.crt"), &file("server.key"), ca_created)?
        .filter(|(cert, _)| missing_hosts(cert, &hosts).is_ok_and(|m| m.is_empty()));
    (pki.server_cert_pem, pki.server_key_pem) = match existing_server {
        Some(pair) => pair,
        None => {
            let pair = pki.issue_server_cert(&hosts)?;
            write_leaf(&file("server.crt"), &file("server.key"), &pair)?;
            pair
        }
    };

    (pki.admin_cert_pem, pki.admin_key_pem) =
        match load_leaf(&file("admin.crt"), &file("admin.key"), ca_created)? {
            Some(pair) => pair,
            None => {
                let pair = pki.issue_client_cert(ADMIN_USER, &[ADMIN_GROUP])?;
                write_leaf(&file("admin.crt"), &file("admin.key"), &pair)?;
                pair
            }
        };
    Ok(pki)
}

impl Pki {
    /// Issues a client certificate (CN = `cn`, O = group) signed by the CA, returning
    /// `(cert_pem, key_pem)`. Kubernetes maps CN to the user name and O to groups.
    ///
    /// rcgen 0.14 can encode only one attribute per type in a subject, so at most one group
    /// is supported; more yield [`Error::Unsupported`].
    pub fn issue_client_cert(&self, cn: &str, groups: &[&str]) -> Result<(String, String)> {
        if groups.len() > 1 {
            return Err(Error::Unsupported(format!(
                "client certificate for {cn:?} with {} groups: at most one O attribute can be encoded",
                groups.len()
            )));
        }
        let mut params = leaf_params(cn);
        if let Some(group) = groups.first() {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params)
    }

    /// Issues a serving certificate for `hosts` (DNS names or IP literals).
    fn issue_server_cert(&self, hosts: &[String]) -> Result<(String, String)> {
        let mut params = leaf_params("kybern-apiserver");
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(h.as_str().try_into()?)),
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(&params)
    }

    fn sign(&self, params: &CertificateParams) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a kubeconfig for `server_url` with the given client credentials (cluster, user and
/// context all named after kybern), mode 0600, atomically.
pub fn write_kubeconfig(path: &Path, server_url: &str, pki: &Pki, cert_pem: &str, key_pem: &str) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "kybern",
            "cluster": {
                "server": server_url,
                "certificate-authority-data": b64(&pki.ca_cert_pem),
            },
        }],
        "users": [{
            "name": ADMIN_USER,
            "user": {
                "client-certificate-data": b64(cert_pem),
                "client-key-data": b64(key_pem),
            },
        }],
        "contexts": [{
            "name": "kybern",
            "context": { "cluster": "kybern", "user": ADMIN_USER },
        }],
        "current-context": "kybern",
        "preferences": {},
    });
    let yaml = serde_yaml::to_string(&doc)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    write_atomic(path, yaml.as_bytes(), 0o600)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    params
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALIDITY);
    params
}

/// Sets the validity to `[now - 1 day, now + lifetime]`, tolerating modest clock skew.
fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    params.not_before = now - DAY;
    params.not_after = now + lifetime;
}

fn generate_ca() -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params().self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Default hosts, the machine's hostname and `extra`, deduplicated, order-preserving.
fn required_hosts(extra: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    DEFAULT_SERVER_HOSTS
        .iter()
        .map(|h| h.to_string())
        .chain(hostname())
        .chain(extra.iter().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .filter(|h| seen.insert(normalize_host(h)))
        .collect()
}

fn normalize_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// The machine's hostname, if it can be determined and is a plausible DNS name.
fn hostname() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = raw.trim().to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    plausible.then_some(name)
}

/// Hosts among `hosts` that `cert_pem`'s SANs do not cover (exact match, case-insensitive).
fn missing_hosts(cert_pem: &str, hosts: &[String]) -> Result<Vec<String>> {
    let der = pem_to_der("server.crt", cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| invalid("server.crt", e))?;
    let mut have = BTreeSet::new();
    if let Some(san) = cert.subject_alternative_name().map_err(|e| invalid("server.crt", e))? {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    have.insert(normalize_host(d));
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("length checked")),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("length checked")),
                        _ => continue,
                    };
                    have.insert(ip.to_string());
                }
                _ => {}
            }
        }
    }
    Ok(hosts.iter().filter(|h| !have.contains(&normalize_host(h))).cloned().collect())
}

fn pem_to_der(what: &str, pem: &str) -> Result<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| invalid(what, e))?;
    Ok(parsed.contents)
}

/// Fails unless `key_pem` parses and is the key of `cert_pem`.
fn check_pair(what: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
    if pair_matches(what, cert_pem, key_pem)? {
        Ok(())
    } else {
        Err(invalid(what, "certificate and private key do not match"))
    }
}

fn pair_matches(what: &str, cert_pem: &str, key_pem: &str) -> Result<bool> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| invalid(format!("{what}.key"), e))?;
    let der = pem_to_der(what, cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| invalid(what, e))?;
    Ok(cert.public_key().raw == key.subject_public_key_info().as_slice())
}

/// Loads an existing leaf pair unless `force_new`, either file is absent, or they do not match.
fn load_leaf(cert_path: &Path, key_path: &Path, force_new: bool) -> Result<Option<(String, String)>> {
    if force_new {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (read_opt(cert_path)?, read_opt(key_path)?) else {
        return Ok(None);
    };
    let what = cert_path.display().to_string();
    Ok(pair_matches(&what, &cert, &key).unwrap_or(false).then_some((cert, key)))
}

fn write_leaf(cert_path: &Path, key_path: &Path, (cert, key): &(String, String)) -> Result<()> {
    write_atomic(key_path, key.as_bytes(), 0o600)?;
    write_atomic(cert_path, cert.as_bytes(), 0o644)
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes `contents` to a temporary sibling with `mode`, fsyncs it, then renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ensure_is_idempotent_and_keeps_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        let second = ensure(dir.path(), &[]).unwrap();
        assert_eq!(first, second, "nothing may be regenerated on a second call");
        assert!(first.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        for name in ["ca.crt", "ca.key", "server.crt", "server.key", "admin.crt", "admin.key"] {
            assert!(dir.path().join("pki").join(name).is_file(), "{name} missing");
        }
    }

    #[test]
    fn new_server_host_reissues_only_the_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        let extra = vec!["api.example.com".to_string(), "192.168.7.9".to_string()];
        let second = ensure(dir.path(), &extra).unwrap();
        assert_eq!(first.ca_cert_pem, second.ca_cert_pem);
        assert_eq!(first.ca_key_pem, second.ca_key_pem);
        assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
        assert_ne!(first.server_cert_pem, second.server_cert_pem);
        assert!(missing_hosts(&second.server_cert_pem, &required_hosts(&extra)).unwrap().is_empty());
        // Already covered (case and address spelling differ): no further reissue.
        let third = ensure(dir.path(), &["API.example.com".to_string(), "0:0:0:0:0:0:0:1".to_string()]).unwrap();
        assert_eq!(second.server_cert_pem, third.server_cert_pem);
    }

    #[test]
    fn serving_cert_covers_default_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let wanted: Vec<String> = DEFAULT_SERVER_HOSTS.iter().map(|h| h.to_string()).collect();
        assert!(missing_hosts(&pki.server_cert_pem, &wanted).unwrap().is_empty());
        if let Some(host) = hostname() {
            assert!(missing_hosts(&pki.server_cert_pem, &[host]).unwrap().is_empty());
        }
    }

    #[test]
    fn key_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &[]).unwrap();
        let pki_dir = dir.path().join("pki");
        for key in ["ca.key", "server.key", "admin.key"] {
            assert_eq!(mode(&pki_dir.join(key)), 0o600, "{key}");
        }
        assert_eq!(mode(&pki_dir.join("ca.crt")), 0o644);
        assert_eq!(mode(&pki_dir), 0o700);
    }

    #[test]
    fn half_present_ca_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &[]).unwrap();
        fs::remove_file(dir.path().join("pki/ca.key")).unwrap();
        assert!(matches!(ensure(dir.path(), &[]), Err(Error::Invalid { .. })));
    }

    #[test]
    fn mismatched_leaf_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        fs::write(dir.path().join("pki/admin.key"), &first.server_key_pem).unwrap();
        let second = ensure(dir.path(), &[]).unwrap();
        assert_ne!(first.admin_cert_pem, second.admin_cert_pem);
        assert!(pair_matches("admin", &second.admin_cert_pem, &second.admin_key_pem).unwrap());
    }

    #[test]
    fn admin_cert_is_a_client_cert_for_system_masters() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let der = pem_to_der("admin", &pki.admin_cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        let o = cert.subject().iter_organization().next().unwrap().as_str().unwrap();
        assert_eq!((cn, o), (ADMIN_USER, ADMIN_GROUP));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ca_der = pem_to_der("ca", &pki.ca_cert_pem).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        assert!(ca.is_ca());
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / (365 * 86400);
        assert!(years >= 10, "CA validity {years} years");
    }

    #[test]
    fn more_than_one_group_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        assert!(matches!(pki.issue_client_cert("x", &["a", "b"]), Err(Error::Unsupported(_))));
        let (cert, key) = pki.issue_client_cert("system:node:n1", &["system:nodes"]).unwrap();
        assert!(pair_matches("node", &cert, &key).unwrap());
    }

    #[test]
    fn kubeconfig_has_expected_fields() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let path = dir.path().join("conf/kubeconfig");
        write_kubeconfig(&path, "https://127.0.0.1:6443", &pki, &pki.admin_cert_pem, &pki.admin_key_pem).unwrap();
        // Overwriting goes through the same atomic path.
        write_kubeconfig(&path, "https://127.0.0.1:6443", &pki, &pki.admin_cert_pem, &pki.admin_key_pem).unwrap();
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");

        let doc: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let b64 = |v: &serde_yaml::Value| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(doc["kind"].as_str(), Some("Config"));
        assert_eq!(doc["current-context"].as_str(), Some("kybern"));
        let cluster = &doc["clusters"][0];
        assert_eq!(cluster["name"].as_str(), Some("kybern"));
        assert_eq!(cluster["cluster"]["server"].as_str(), Some("https://127.0.0.1:6443"));
        assert_eq!(b64(&cluster["cluster"]["certificate-authority-data"]), pki.ca_cert_pem);
        let user = &doc["users"][0];
        assert_eq!(user["name"].as_str(), Some("kybern-admin"));
        assert_eq!(b64(&user["user"]["client-certificate-data"]), pki.admin_cert_pem);
        assert_eq!(b64(&user["user"]["client-key-data"]), pki.admin_key_pem);
        let context = &doc["contexts"][0];
        assert_eq!(context["name"].as_str(), Some("kybern"));
        assert_eq!(context["context"]["cluster"].as_str(), Some("kybern"));
        assert_eq!(context["context"]["user"].as_str(), Some("kybern-admin"));
    }
}
