//! Cluster PKI: creates and persists the kybern CA, the API server's serving certificate and the admin client certificate, issues further client certificates, and writes kubeconfigs.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
pub use rcgen::ExtendedKeyUsagePurpose;
pub use rcgen::KeyUsagePurpose;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose as Ku, PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "kybern-ca";
/// Common name (user) of the admin client certificate.
pub const ADMIN_USER: &str = "kybern-admin";
/// Organization (group) of the admin client certificate.
pub const ADMIN_GROUP: &str = "system:masters";
/// Common name (user) of the certificate the API server presents to nodes' agents (the
/// node API accepts this user), as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How far back a signed request's certificate starts (upstream's signers' Backdate).
const SIGNING_BACKDATE: Duration = Duration::from_secs(5 * 60);
/// Certificates asked for shorter than this keep their whole end (upstream's Short).
const SHORT_LIVED: Duration = Duration::from_secs(8 * 60 * 60);
const CA_DAYS: u32 = 3650;
const LEAF_DAYS: u32 = 730;
/// Hosts the serving certificate always covers (besides the machine's hostname). The
/// server adds the ones its flags decide: the advertised address, the `kubernetes`
/// Service's ClusterIP and `kubernetes.default.svc.<cluster domain>`.
const DEFAULT_SERVER_HOSTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
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
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(what: impl Into<String>, reason: impl fmt::Display) -> Error {
    Error::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// PEM-encoded cluster credentials. `Debug` omits the private keys.
#[derive(Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// What the API server presents to nodes' agents (`pods/log`, `exec`, proxies).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .finish_non_exhaustive()
    }
}

/// Loads the PKI under `dir/pki/`, creating whatever is missing.
///
/// The CA is never regenerated once it exists (half of it existing is an error). The serving
/// certificate is reissued when one of the required hosts (defaults, hostname, `server_hosts`)
/// is not among its SANs; a leaf is also reissued when it is missing, does not match its key,
/// was not issued by this CA or has less than a third of its life left ([`fresh`]), so a
/// server started at least every eight months never serves an expired one.
pub fn ensure(dir: &Path, server_hosts: &[String]) -> Result<Pki> {
    let pki_dir = dir.join("pki");
    fs::create_dir_all(&pki_dir).map_err(io_err(&pki_dir))?;
    fs::set_permissions(&pki_dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&pki_dir))?;
    let file = |name: &str| pki_dir.join(name);

    let (ca_cert_pem, ca_key_pem) = match (read_opt(&file("ca.crt"))?, read_opt(&file("ca.key"))?) {
        (Some(cert), Some(key)) if pair_matches("ca.crt", &cert, &key)? => (cert, key),
        (Some(_), Some(_)) => return Err(invalid("ca.crt", "certificate and ca.key do not match")),
        (None, None) => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let pair = (ca_params().self_signed(&key)?.pem(), key.serialize_pem());
            write_pair(&file("ca.crt"), &file("ca.key"), &pair)?;
            pair
        }
        _ => {
            return Err(invalid(
                pki_dir.display().to_string(),
                "only one of ca.crt and ca.key exists",
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
        kubelet_client_cert_pem: String::new(),
        kubelet_client_key_pem: String::new(),
    };
    // Leaves whose authority key identifier is not this CA's were issued by another CA.
    let ca_key_id = ca_params().key_identifier(&KeyPair::from_pem(&pki.ca_key_pem)?);
    let hosts = required_hosts(server_hosts);
    (pki.server_cert_pem, pki.server_key_pem) = load_or_issue(
        (&file("server.crt"), &file("server.key")),
        &ca_key_id,
        |cert| missing_hosts(cert, &hosts).is_ok_and(|m| m.is_empty()),
        || pki.issue_server_cert(&hosts),
    )?;
    (pki.admin_cert_pem, pki.admin_key_pem) = load_or_issue(
        (&file("admin.crt"), &file("admin.key")),
        &ca_key_id,
        |_| true,
        || pki.issue_client_cert(ADMIN_USER, &[ADMIN_GROUP]),
    )?;
    (pki.kubelet_client_cert_pem, pki.kubelet_client_key_pem) = load_or_issue(
        (&file("kubelet-client.crt"), &file("kubelet-client.key")),
        &ca_key_id,
        |_| true,
        || pki.issue_client_cert(KUBELET_CLIENT_USER, &[ADMIN_GROUP]),
    )?;
    Ok(pki)
}

impl Pki {
    /// Issues a client certificate (CN = `cn`, O = the group) signed by the CA, returning
    /// `(cert_pem, key_pem)`. Kubernetes maps CN to the user name and O to groups.
    ///
    /// rcgen 0.14 encodes at most one attribute per type in a subject, so at most one group is
    /// supported; more yield [`Error::Unsupported`].
    pub fn issue_client_cert(&self, cn: &str, groups: &[&str]) -> Result<(String, String)> {
        if groups.len() > 1 {
            return Err(Error::Unsupported(format!(
                "{cn:?} with {} groups: at most one O is encodable",
                groups.len()
            )));
        }
        let mut params = params(cn, LEAF_DAYS);
        if let Some(group) = groups.first() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![Ku::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(&params)
    }

    /// The client certificate for `cn` (in at most one group) kept in `<dir>/pki/<name>.crt`
    /// and `.key`: the stored one while it is this CA's and [`fresh`], else a new one
    /// (renewed as [`ensure`] renews the admin's).
    pub fn stored_client_cert(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        groups: &[&str],
    ) -> Result<(String, String)> {
        let pki_dir = dir.join("pki");
        let ca_key_id = ca_params().key_identifier(&KeyPair::from_pem(&self.ca_key_pem)?);
        load_or_issue(
            (
                &pki_dir.join(format!("{name}.crt")),
                &pki_dir.join(format!("{name}.key")),
            ),
            &ca_key_id,
            |_| true,
            || self.issue_client_cert(cn, groups),
        )
    }

    /// Issues a serving certificate for `hosts` (DNS names or IP literals).
    fn issue_server_cert(&self, hosts: &[String]) -> Result<(String, String)> {
        let mut params = params("kybern-apiserver", LEAF_DAYS);
        for host in hosts {
            params.subject_alt_names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.as_str().try_into()?),
            });
        }
        params.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(&params)
    }

    /// Signs a PKCS#10 request (PEM) as a CertificateSigningRequest's signer does: the
    /// subject and subject alternative names come from the request (whose signature is
    /// checked), the usages and the validity from `grant`; nothing else the request asks
    /// for (CA, other extensions) is granted. Returns the certificate's PEM.
    ///
    /// The validity is upstream's signing policy's: from five minutes ago (clock skew)
    /// for `grant.validity`, the end moved back by those five minutes too unless the
    /// certificate is short-lived (under eight hours), and never past the CA's own end.
    pub fn sign_request(&self, request_pem: &str, grant: &Grant) -> Result<String> {
        let requested = rcgen::CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| invalid("certificate request", e))?;
        let mut params = params("", 0);
        params.distinguished_name = requested.params.distinguished_name.clone();
        params.subject_alt_names = requested.params.subject_alt_names.clone();
        let now = params.not_before + DAY;
        params.not_before = now - SIGNING_BACKDATE;
        params.not_after = match grant.validity < SHORT_LIVED {
            true => now + grant.validity,
            false => now + grant.validity - SIGNING_BACKDATE,
        };
        let ca_end = with_cert("ca.crt", &self.ca_cert_pem, |ca| {
            ca.validity().not_after.timestamp()
        })?;
        if params.not_after.unix_timestamp() > ca_end {
            params.not_after = rcgen::date_time_ymd(1970, 1, 1)
                + Duration::from_secs(u64::try_from(ca_end).unwrap_or_default());
        }
        if now.unix_timestamp() >= ca_end {
            return Err(invalid("ca.crt", "the signer has expired"));
        }
        params.key_usages = grant.key_usages.clone();
        params.extended_key_usages = grant.extended_key_usages.clone();
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&self.ca_key_pem)?);
        let request = rcgen::CertificateSigningRequestParams {
            params,
            public_key: requested.public_key,
        };
        Ok(request.signed_by(&issuer)?.pem())
    }

    fn sign(&self, params: &CertificateParams) -> Result<(String, String)> {
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&self.ca_key_pem)?);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    }
}

/// What a signer grants a certificate request: the usages and how long it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key_usages: Vec<Ku>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    pub validity: Duration,
}

/// The subject and subject alternative names a PKCS#10 request (PEM) asks for, its
/// signature checked: `(common name, organizations, DNS names, IP addresses, other
/// names)`, where other names are the SAN kinds (e-mail, URI) a node may not ask for.
pub fn request_names(request_pem: &str) -> Result<RequestNames> {
    let requested = rcgen::CertificateSigningRequestParams::from_pem(request_pem)
        .map_err(|e| invalid("certificate request", e))?;
    let text = |v: &rcgen::DnValue| match v {
        rcgen::DnValue::PrintableString(s) => s.to_string(),
        rcgen::DnValue::Utf8String(s) => s.clone(),
        other => format!("{other:?}"),
    };
    let mut names = RequestNames::default();
    for (kind, value) in requested.params.distinguished_name.iter() {
        match kind {
            DnType::CommonName => names.common_name = text(value),
            DnType::OrganizationName => names.organizations.push(text(value)),
            _ => {}
        }
    }
    for san in &requested.params.subject_alt_names {
        match san {
            SanType::DnsName(d) => names.dns_names.push(d.to_string()),
            SanType::IpAddress(ip) => names.ip_addresses.push(ip.to_owned()),
            other => names.other_names.push(format!("{other:?}")),
        }
    }
    names.is_ca = !matches!(requested.params.is_ca, IsCa::NoCa | IsCa::ExplicitNoCa);
    Ok(names)
}

/// What a certificate request asks to be named (see [`request_names`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestNames {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub other_names: Vec<String>,
    pub is_ca: bool,
}

/// Writes a kubeconfig for `server_url` with the given client credentials (cluster and context
/// `kybern`, user `kybern-admin`), mode 0600, atomically (temp file + rename).
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    pki: &Pki,
    cert_pem: &str,
    key_pem: &str,
) -> Result<()> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "kybern",
            "cluster": { "server": server_url, "certificate-authority-data": b64(&pki.ca_cert_pem) },
        }],
        "users": [{
            "name": ADMIN_USER,
            "user": { "client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem) },
        }],
        "contexts": [{ "name": "kybern", "context": { "cluster": "kybern", "user": ADMIN_USER } }],
        "current-context": "kybern",
        "preferences": {},
    });
    let yaml = serde_yaml::to_string(&doc)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    write_atomic(path, yaml.as_bytes(), 0o600)
}

/// The CA's parameters. Also used to rebuild the issuer from the stored CA key, so the
/// subject and key usages must stay stable.
fn ca_params() -> CertificateParams {
    let mut params = params(CA_COMMON_NAME, CA_DAYS);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    params.use_authority_key_identifier_extension = false;
    params
}

/// Parameters with subject CN `cn`, valid from a day ago (clock skew) for `days` days.
fn params(cn: &str, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
    params.not_before = now - DAY;
    params.not_after = now + DAY * days;
    params
}

/// Default hosts, the machine's hostname and `extra`, deduplicated, order-preserving.
fn required_hosts(extra: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let defaults = DEFAULT_SERVER_HOSTS
        .iter()
        .map(|h| h.to_string())
        .chain(hostname());
    defaults
        .chain(extra.iter().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty() && seen.insert(normalize_host(h)))
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
    let dns_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (!name.is_empty() && name.len() <= 253 && dns_chars).then_some(name)
}

/// The key identifier in `cert`'s authority key identifier extension, if any.
fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}

/// Runs `f` on the parsed certificate in `pem`.
fn with_cert<T>(what: &str, pem: &str, f: impl FnOnce(&X509Certificate<'_>) -> T) -> Result<T> {
    let (_, parsed) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| invalid(what, e))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&parsed.contents).map_err(|e| invalid(what, e))?;
    Ok(f(&cert))
}

/// Hosts among `hosts` that `cert_pem`'s SANs do not cover (exact match, case-insensitive).
fn missing_hosts(cert_pem: &str, hosts: &[String]) -> Result<Vec<String>> {
    let have = with_cert("server.crt", cert_pem, |cert| {
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return BTreeSet::new();
        };
        let names = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(d) => Some(normalize_host(d)),
                GeneralName::IPAddress(b) => <[u8; 4]>::try_from(*b)
                    .map(IpAddr::from)
                    .or_else(|_| <[u8; 16]>::try_from(*b).map(IpAddr::from))
                    .ok()
                    .map(|ip| ip.to_string()),
                _ => None,
            });
        names.collect::<BTreeSet<_>>()
    })?;
    Ok(hosts
        .iter()
        .filter(|h| !have.contains(&normalize_host(h)))
        .cloned()
        .collect())
}

/// Whether `key_pem` is the private key of `cert_pem`; errors if either does not parse.
fn pair_matches(what: &str, cert_pem: &str, key_pem: &str) -> Result<bool> {
    let spki = KeyPair::from_pem(key_pem)
        .map_err(|e| invalid(what, e))?
        .subject_public_key_info();
    with_cert(what, cert_pem, |cert| {
        cert.public_key().raw == spki.as_slice()
    })
}

/// Whether more than a third of the certificate's lifetime is left: a 730-day leaf is
/// renewed once it is about 487 days old (the kubelet rotates its certificates between
/// 70% and 90% of their life; kubeadm asks for renewal within the last 30 days).
fn fresh(cert_pem: &str) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    with_cert("leaf", cert_pem, |cert| {
        let v = cert.validity();
        let (from, to) = (v.not_before.timestamp(), v.not_after.timestamp());
        (to - now) * 3 > to - from
    })
    .unwrap_or(false)
}

/// Returns the stored pair at `paths` if present, matching, issued by the CA with key id
/// `ca_key_id` and `acceptable`; otherwise issues, stores and returns a new one.
fn load_or_issue(
    (cert_path, key_path): (&Path, &Path),
    ca_key_id: &[u8],
    acceptable: impl FnOnce(&str) -> bool,
    issue: impl FnOnce() -> Result<(String, String)>,
) -> Result<(String, String)> {
    if let (Some(cert), Some(key)) = (read_opt(cert_path)?, read_opt(key_path)?) {
        let same_ca = with_cert("leaf", &cert, authority_key_id)
            .is_ok_and(|id| id.as_deref() == Some(ca_key_id));
        if same_ca
            && pair_matches("leaf", &cert, &key).unwrap_or(false)
            && fresh(&cert)
            && acceptable(&cert)
        {
            return Ok((cert, key));
        }
    }
    let pair = issue()?;
    write_pair(cert_path, key_path, &pair)?;
    Ok(pair)
}

/// Writes the key (0600) before the certificate (0644).
fn write_pair(cert_path: &Path, key_path: &Path, (cert, key): &(String, String)) -> Result<()> {
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

/// Writes `contents` to a fresh temporary sibling with `mode`, fsyncs it, renames it over `path`.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
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
    fn ensure_twice_keeps_everything_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        assert_eq!(
            first,
            ensure(dir.path(), &[]).unwrap(),
            "nothing may be regenerated"
        );
        let pki_dir = dir.path().join("pki");
        for key in ["ca.key", "server.key", "admin.key", "kubelet-client.key"] {
            assert_eq!(mode(&pki_dir.join(key)), 0o600, "{key}");
        }
        for cert in ["ca.crt", "server.crt", "admin.crt"] {
            assert_eq!(mode(&pki_dir.join(cert)), 0o644, "{cert}");
        }
        assert_eq!(mode(&pki_dir), 0o700);
        let wanted: Vec<String> = DEFAULT_SERVER_HOSTS
            .iter()
            .map(|h| h.to_string())
            .chain(hostname())
            .collect();
        assert!(missing_hosts(&first.server_cert_pem, &wanted)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_signed_request_keeps_its_names_and_gets_only_the_granted_usages() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        params.subject_alt_names = vec![SanType::IpAddress("10.0.0.7".parse().unwrap())];
        // Asked for, not granted: client authentication.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let names = request_names(&request).unwrap();
        assert_eq!(names.common_name, "system:node:n1");
        assert_eq!(names.organizations, ["system:nodes"]);
        assert_eq!(names.ip_addresses, ["10.0.0.7".parse::<IpAddr>().unwrap()]);
        assert!(!names.is_ca);
        let grant = Grant {
            key_usages: vec![Ku::DigitalSignature],
            extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
            validity: Duration::from_secs(3600),
        };
        let cert = pki.sign_request(&request, &grant).unwrap();
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!parsed.is_ca());
        // An hour is short-lived: from five minutes ago for the whole hour after now.
        let v = parsed.validity();
        assert_eq!(
            v.not_after.timestamp() - v.not_before.timestamp(),
            3600 + 300,
            "{v:?}"
        );
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let ca_der = CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        parsed.verify_signature(Some(ca.public_key())).unwrap();
        assert!(sign_request_rejects_garbage(&pki));
    }

    #[test]
    fn a_signed_request_lives_as_long_as_granted_from_five_minutes_ago() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "jane");
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // (granted, lifetime, end from now): a day is moved back by the five minutes,
        // ten years are cut at the CA's end.
        let ca_end = with_cert("ca", &pki.ca_cert_pem, |c| {
            c.validity().not_after.timestamp()
        })
        .unwrap();
        for (granted, lifetime) in [
            (24 * 3600, 24 * 3600),
            (8 * 3600, 8 * 3600),
            (600, 600 + 300),
            (20 * 365 * 24 * 3600, ca_end - (now - 300)),
        ] {
            let grant = Grant {
                key_usages: vec![Ku::DigitalSignature],
                extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
                validity: Duration::from_secs(granted as u64),
            };
            let cert = pki.sign_request(&request, &grant).unwrap();
            let (from, to) = with_cert("signed", &cert, |c| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            })
            .unwrap();
            assert!(
                (from - (now - 300)).abs() <= 2,
                "{granted}: starts at {from}, now {now}"
            );
            assert!(
                (to - from - lifetime).abs() <= 2,
                "{granted}: lives {} s, not {lifetime}",
                to - from
            );
        }
    }

    fn sign_request_rejects_garbage(pki: &Pki) -> bool {
        let grant = Grant {
            key_usages: vec![],
            extended_key_usages: vec![],
            validity: Duration::from_secs(60),
        };
        pki.sign_request("not a request", &grant).is_err()
    }

    #[test]
    fn new_server_host_reissues_only_the_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        let extra = vec!["api.example.com".to_string(), "192.168.7.9".to_string()];
        let second = ensure(dir.path(), &extra).unwrap();
        assert_eq!(
            (&first.ca_cert_pem, &first.ca_key_pem),
            (&second.ca_cert_pem, &second.ca_key_pem)
        );
        assert_eq!(first.admin_cert_pem, second.admin_cert_pem);
        assert_ne!(first.server_cert_pem, second.server_cert_pem);
        assert!(missing_hosts(&second.server_cert_pem, &extra)
            .unwrap()
            .is_empty());
        // Already covered (case and address spelling differ): no further reissue.
        let third = ensure(
            dir.path(),
            &["API.example.com".into(), "0:0:0:0:0:0:0:1".into()],
        )
        .unwrap();
        assert_eq!(second.server_cert_pem, third.server_cert_pem);
    }

    #[test]
    fn damaged_state_is_repaired_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[]).unwrap();
        fs::write(dir.path().join("pki/admin.key"), &first.server_key_pem).unwrap();
        let second = ensure(dir.path(), &[]).unwrap();
        assert_ne!(
            first.admin_cert_pem, second.admin_cert_pem,
            "mismatched leaf is reissued"
        );
        assert!(pair_matches("admin", &second.admin_cert_pem, &second.admin_key_pem).unwrap());
        fs::remove_file(dir.path().join("pki/ca.key")).unwrap();
        assert!(
            matches!(ensure(dir.path(), &[]), Err(Error::Invalid { .. })),
            "half a CA is refused"
        );
        // A CA replaced from elsewhere: leaves issued by the old CA are reissued.
        let other = tempfile::tempdir().unwrap();
        let foreign = ensure(other.path(), &[]).unwrap();
        for name in ["ca.crt", "ca.key"] {
            fs::copy(
                other.path().join("pki").join(name),
                dir.path().join("pki").join(name),
            )
            .unwrap();
        }
        let third = ensure(dir.path(), &[]).unwrap();
        assert_eq!(third.ca_cert_pem, foreign.ca_cert_pem);
        assert_ne!(third.server_cert_pem, second.server_cert_pem);
        assert_ne!(third.admin_cert_pem, second.admin_cert_pem);
    }

    #[test]
    fn admin_cert_and_issued_certs() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let ca_subject = with_cert("ca", &pki.ca_cert_pem, |ca| {
            assert!(ca.is_ca());
            let validity =
                ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
            assert!(validity >= 3650 * 86400, "CA validity {validity}s");
            ca.subject().to_string()
        })
        .unwrap();
        assert_eq!(ca_subject, "CN=kybern-ca");
        with_cert("admin", &pki.admin_cert_pem, |cert| {
            assert_eq!(
                cert.subject().to_string(),
                "CN=kybern-admin, O=system:masters"
            );
            assert_eq!(cert.issuer().to_string(), ca_subject);
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth);
        })
        .unwrap();
        assert!(matches!(
            pki.issue_client_cert("x", &["a", "b"]),
            Err(Error::Unsupported(_))
        ));
        let (cert, key) = pki
            .issue_client_cert("system:node:n1", &["system:nodes"])
            .unwrap();
        assert!(pair_matches("node", &cert, &key).unwrap());
    }

    /// Replaces `<dir>/pki/<name>.crt` with one for the same key and CA, issued `age_days`
    /// ago and valid for 730 days.
    fn age_cert(dir: &Path, pki: &Pki, name: &str, age_days: u32) -> String {
        let pki_dir = dir.join("pki");
        let key =
            KeyPair::from_pem(&fs::read_to_string(pki_dir.join(format!("{name}.key"))).unwrap())
                .unwrap();
        let mut params = params(name, 730);
        params.not_before = params.not_before + DAY - DAY * age_days;
        params.not_after = params.not_before + DAY * 730;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&pki.ca_key_pem).unwrap());
        let cert = params.signed_by(&key, &issuer).unwrap().pem();
        fs::write(pki_dir.join(format!("{name}.crt")), &cert).unwrap();
        cert
    }

    #[test]
    fn a_client_cert_with_less_than_a_third_of_its_life_left_is_renewed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let scheduler = |pki: &Pki| {
            pki.stored_client_cert(dir.path(), "scheduler", "system:kube-scheduler", &[])
                .unwrap()
                .0
        };
        let first = scheduler(&pki);
        assert_eq!(scheduler(&pki), first, "a fresh one is kept");
        let cases = [
            ("admin", 400, false),
            ("admin", 500, true),
            ("scheduler", 400, false),
            ("scheduler", 500, true),
            ("kubelet-client", 700, true),
        ];
        for (name, age, renewed) in cases {
            let aged = age_cert(dir.path(), &pki, name, age);
            let now = ensure(dir.path(), &[]).unwrap();
            let kept = match name {
                "admin" => now.admin_cert_pem,
                "kubelet-client" => now.kubelet_client_cert_pem,
                _ => scheduler(&now),
            };
            assert_eq!(kept != aged, renewed, "{name} {age} days old");
            if renewed {
                with_cert(name, &kept, |c| {
                    let left = c.validity().not_after.timestamp()
                        - SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs() as i64;
                    assert!(left > 700 * 86400, "{name}: {left}s left");
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn kubeconfig_has_expected_fields() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure(dir.path(), &[]).unwrap();
        let path = dir.path().join("conf/kubeconfig");
        for _ in 0..2 {
            write_kubeconfig(
                &path,
                "https://127.0.0.1:6443",
                &pki,
                &pki.admin_cert_pem,
                &pki.admin_key_pem,
            )
            .unwrap();
        }
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "temporary files left behind"
        );

        let doc: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let b64 = |v: &serde_yaml::Value| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let s = |v: &serde_yaml::Value| v.as_str().unwrap().to_string();
        assert_eq!(s(&doc["kind"]), "Config");
        assert_eq!(s(&doc["current-context"]), "kybern");
        let (cluster, user, context) = (&doc["clusters"][0], &doc["users"][0], &doc["contexts"][0]);
        assert_eq!(s(&cluster["name"]), "kybern");
        assert_eq!(s(&cluster["cluster"]["server"]), "https://127.0.0.1:6443");
        assert_eq!(
            b64(&cluster["cluster"]["certificate-authority-data"]),
            pki.ca_cert_pem
        );
        assert_eq!(s(&user["name"]), "kybern-admin");
        assert_eq!(
            b64(&user["user"]["client-certificate-data"]),
            pki.admin_cert_pem
        );
        assert_eq!(b64(&user["user"]["client-key-data"]), pki.admin_key_pem);
        assert_eq!(s(&context["name"]), "kybern");
        assert_eq!(s(&context["context"]["cluster"]), "kybern");
        assert_eq!(s(&context["context"]["user"]), "kybern-admin");
    }
}
