//! Debian's docker-registry on 127.0.0.1 with htpasswd or token auth and optional TLS,
//! started by pid and killed by pid on drop: the agent's registry tests and the end-to-end
//! pod tests (`tests/tests/pods`) pull from it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent::runtime::RegistryAuth;
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

/// Who may pull and push.
enum Auth<'a> {
    /// Anyone: a registry without an auth section, as a local mirror often is.
    Anonymous,
    /// [`USER`] with [`PASSWORD`], checked against an htpasswd file.
    Htpasswd,
    /// Bearer tokens from a token server.
    Token(&'a TokenAuth),
}

impl Registry {
    /// htpasswd auth unless `token` names a token server to trust instead.
    pub fn start(tls: Option<&Tls>, token: Option<&TokenAuth>) -> Registry {
        Self::launch(tls, token.map_or(Auth::Htpasswd, Auth::Token))
    }

    /// Plain HTTP, no authentication: anyone on loopback pulls and pushes.
    pub fn start_anonymous() -> Registry {
        Self::launch(None, Auth::Anonymous)
    }

    fn launch(tls: Option<&Tls>, auth: Auth<'_>) -> Registry {
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
        let auth_config = match auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd => format!(
                "auth:\n  htpasswd:\n    realm: kybern-test\n    path: {}/htpasswd\n",
                dir.path().display()
            ),
            Auth::Token(t) => format!(
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

pub fn right() -> RegistryAuth {
    RegistryAuth {
        username: USER.into(),
        password: PASSWORD.into(),
    }
}
