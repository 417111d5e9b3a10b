//! Image references as docker and containerd read them: `busybox` is
//! `docker.io/library/busybox:latest`, `host:5000/a/b:tag` names its registry, and
//! `name@sha256:...` pins a digest. The normalized full form is the name images are stored
//! under.

use std::fmt;

use super::Error;

/// The registry a reference without a registry part names.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is served (docker.io itself only redirects).
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as named, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>` when the reference pins one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference as docker does, filling in the defaults (Docker Hub, `library/`,
    /// `:latest` when neither tag nor digest is given).
    pub fn parse(input: &str) -> Result<Reference, Error> {
        let invalid = |why: &str| Error::InvalidReference(format!("{input:?}: {why}"));
        if input.is_empty() {
            return Err(invalid("empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (input, None),
        };
        if let Some(d) = digest {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| invalid("only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(invalid("invalid digest"));
            }
        }
        // A tag follows the last ':' of the last path component (a ':' before the last '/'
        // is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(invalid("invalid tag"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(invalid("invalid repository name"));
        }
        if registry.is_empty() || registry.contains(['/', '@']) {
            return Err(invalid("invalid registry"));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) the registry API is served on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The full form of an image reference (`busybox` → `docker.io/library/busybox:latest`),
/// the name images are stored and looked up under. A string that does not parse is returned
/// unchanged, so the pull that follows reports why.
pub fn normalize(image: &str) -> String {
    Reference::parse(image).map_or_else(|_| image.to_string(), |r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_normalize_as_docker_does() {
        let pinned = format!("busybox@{D}");
        let pinned_want = format!("docker.io/library/busybox@{D}");
        let both = format!("127.0.0.1:5000/app:v1@{D}");
        let cases: &[(&str, &str, &str)] = &[
            ("short name", "busybox", "docker.io/library/busybox:latest"),
            (
                "short name with tag",
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
            ),
            ("hub user repo", "user/app", "docker.io/user/app:latest"),
            (
                "index alias",
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "explicit hub",
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("host with port", "host:5000/a/b:tag", "host:5000/a/b:tag"),
            (
                "loopback port no tag",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest",
            ),
            ("localhost", "localhost/app", "localhost/app:latest"),
            (
                "domain",
                "kybern.local/busybox:latest",
                "kybern.local/busybox:latest",
            ),
            ("digest only", &pinned, &pinned_want),
            ("tag and digest", &both, &both),
        ];
        for (name, input, want) in cases {
            assert_eq!(normalize(input), *want, "{name}");
        }
    }

    #[test]
    fn references_split_into_registry_repository_and_reference() {
        let r = Reference::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.manifest_reference(),
                r.api_host()
            ),
            ("127.0.0.1:5000", "team/app", "v1", "127.0.0.1:5000")
        );
        let hub = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(hub.manifest_reference(), D, "a digest wins over the tag");
        assert_eq!(hub.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn malformed_references_are_rejected() {
        let cases = [
            ("empty", ""),
            ("uppercase repository", "Busybox"),
            ("empty tag", "busybox:"),
            ("bad digest", "busybox@sha256:abc"),
            ("other algorithm", "busybox@md5:0123"),
            ("double slash", "host:5000//app"),
            ("trailing separator", "app-"),
        ];
        for (name, input) in cases {
            assert!(
                matches!(Reference::parse(input), Err(Error::InvalidReference(_))),
                "{name}: {input:?} should not parse"
            );
            assert_eq!(normalize(input), input, "{name}: left unchanged");
        }
    }
}
