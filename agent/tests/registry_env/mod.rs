//! Harness for registry tests (root not needed for the registry itself): the registry
//! process (`kybern_testkit::registry`) and a token server issuing JWTs the registry trusts.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::runtime::RegistryAuth;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::json;

pub(crate) use kybern_testkit::registry::*;

/// A token server as docker's distribution specifies it, on a thread of its own on
/// 127.0.0.1: `GET /token?service=&scope=` with basic credentials returns a JWT (ES256,
/// the signing certificate in `x5c`) granting the scope asked for; wrong or missing
/// credentials get 401. Stopped and joined on drop.
pub(crate) struct TokenServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    pub(crate) fn start(cert_pem: &Path, key_pem: &Path) -> TokenServer {
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
