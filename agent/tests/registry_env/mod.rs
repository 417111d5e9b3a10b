//! Harness for registry tests (root not needed for the registry itself): Debian's
//! docker-registry on 127.0.0.1 with htpasswd or token auth and optional TLS, started by
//! pid and killed by pid on drop, and a token server issuing JWTs the registry trusts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::runtime::RegistryAuth;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::json;

pub const USER: &str = "puller";
pub const PASSWORD: &str = "right-password";

/// A docker-registry process on 127.0.0.1, killed by its pid on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Registry {
    /// htpasswd auth unless `token` names a token server to trust instead.
    pub fn start(tls: Option<&Tls>, token: Option<&TokenAuth>) -> Registry {
        for bin in ["docker-registry", "htpasswd"] {
            assert!(
                Command::new("which")
                    .arg(bin)
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{bin} not on PATH: run scripts/install-deps.sh (docker-registry, apache2-utils)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("kyb-registry")
            .tempdir()
            .expect("temp dir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd");
        assert!(htpasswd.status.success(), "htpasswd: {htpasswd:?}");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        // A free port: bound and released; the registry takes it right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tls_config = tls.map_or(String::new(), |t| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            )
        });
        let auth_config = match token {
            None => format!(
                "auth:\n  htpasswd:\n    realm: kybern-test\n    path: {}/htpasswd\n",
                dir.path().display()
            ),
            Some(t) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                t.realm,
                t.root_bundle.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kybern-test\n{tls_config}{auth_config}",
            d = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited: {status}; log: {}", registry.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{}/{repo_tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SERVICE: &str = "kybern-test-registry";
pub const ISSUER: &str = "kybern-test-token-issuer";

/// What the registry needs to trust a token server.
pub struct TokenAuth {
    pub realm: String,
    pub root_bundle: PathBuf,
}

/// A token server as docker's distribution specifies it, on a thread of its own on
/// 127.0.0.1: `GET /token?service=&scope=` with basic credentials returns a JWT (ES256,
/// the signing certificate in `x5c`) granting the scope asked for; wrong or missing
/// credentials get 401. Stopped and joined on drop.
pub struct TokenServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(cert_pem: &Path, key_pem: &Path) -> TokenServer {
        let cert = CertificateDer::from_pem_file(cert_pem)
            .expect("signing cert")
            .to_vec();
        let key = PrivatePkcs8KeyDer::from_pem_file(key_pem).expect("signing key");
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            key.secret_pkcs8_der(),
            &rng,
        )
        .expect("an ECDSA P-256 key");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve_token(conn, &cert, &key, &rng),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("token server accept: {e}"),
                }
            }
        });
        TokenServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_token(
    mut conn: std::net::TcpStream,
    cert: &[u8],
    key: &EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
) {
    use std::io::{Read, Write};
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
            .unwrap_or_default()
    };
    let expected = format!("authorization: {}", basic_header_value(&right()));
    let authorized = request.lines().any(|l| l.eq_ignore_ascii_case(&expected));
    let (status, body) = if authorized && param("service") == SERVICE {
        // scope = repository:<name>:<actions>
        let scope = param("scope");
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let actions: Vec<&str> = actions.split(',').collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let b64url = |data: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
        let header = json!({"typ": "JWT", "alg": "ES256",
                            "x5c": [base64::engine::general_purpose::STANDARD.encode(cert)]});
        let claims = json!({"iss": ISSUER, "sub": USER, "aud": SERVICE, "iat": now, "nbf": now - 10,
                            "exp": now + 300, "jti": format!("{now}-{}", std::process::id()),
                            "access": [{"type": kind, "name": name, "actions": actions}]});
        let signing_input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        let signature = key.sign(rng, signing_input.as_bytes()).expect("sign");
        let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
        ("200 OK", json!({"token": token}).to_string())
    } else {
        (
            "401 Unauthorized",
            r#"{"details":"bad credentials"}"#.to_string(),
        )
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn basic_header_value(auth: &RegistryAuth) -> String {
    let raw = format!("{}:{}", auth.username, auth.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub fn right() -> RegistryAuth {
    RegistryAuth {
        username: USER.into(),
        password: PASSWORD.into(),
    }
}
