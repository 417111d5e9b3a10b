//! Parsing of request paths and query strings into what a request is about, as
//! upstream's RequestInfoFactory does (`/api/v1/namespaces/ns/pods/name/status`).

use std::collections::HashMap;

/// A request for a resource (as opposed to `/version`, `/healthz`, discovery...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub legacy_watch: bool,
}

impl ResourcePath {
    /// Whether a GET of this path watches: the legacy `/watch/` prefix or `?watch=true`.
    /// The router and the authorizer's verb both ask this, so they never disagree.
    pub fn is_watch(&self, query: &Query) -> bool {
        self.legacy_watch || query.flag("watch")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    Resource(ResourcePath),
    /// `/api` (core) or `/apis`.
    DiscoveryRoot {
        core: bool,
    },
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/apis/<group>`.
    Group {
        group: String,
    },
    Other(String),
}

fn decode(segment: &str) -> String {
    // Names are DNS subdomains (or RBAC path segments) in practice; decode %XX anyway.
    percent_decode(segment, false)
}

/// `%XX` as its byte, and with `plus_is_space` `+` as a space (form encoding), as Go's
/// lenient unescaping: a `%` not followed by two hex digits stays as written. Shared by
/// paths, queries, impersonation headers, CEL's `url()` and the agent's streams.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_path(path: &str) -> Path {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<String> = trimmed.split('/').skip(1).map(decode).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Path::DiscoveryRoot { core: true },
        ["apis"] => return Path::DiscoveryRoot { core: false },
        ["api", v] => {
            return Path::GroupVersion {
                group: String::new(),
                version: v.to_string(),
            }
        }
        ["apis", g] => {
            return Path::Group {
                group: g.to_string(),
            }
        }
        ["apis", g, v] => {
            return Path::GroupVersion {
                group: g.to_string(),
                version: v.to_string(),
            }
        }
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Path::Other(path.to_string()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let mk = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Path::Resource(ResourcePath {
            group: group.clone(),
            version: version.clone(),
            namespace: namespace.map(str::to_string),
            resource: resource.to_string(),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            legacy_watch,
        })
    };
    match rest {
        // `namespaces/<ns>` is the namespace object itself; `namespaces/<ns>/finalize|status`
        // its subresources; `namespaces/<ns>/<resource>...` a namespaced resource.
        ["namespaces", ns] => mk(None, "namespaces", Some(ns), None),
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            mk(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, resource] => mk(Some(ns), resource, None, None),
        ["namespaces", ns, resource, name] => mk(Some(ns), resource, Some(name), None),
        ["namespaces", ns, resource, name, sub] => mk(Some(ns), resource, Some(name), Some(sub)),
        // `.../pods/<name>/proxy/<path on the pod>`: the rest is the proxied path.
        ["namespaces", ns, resource, name, "proxy", _, ..] => {
            mk(Some(ns), resource, Some(name), Some("proxy"))
        }
        [resource, name, "proxy", _, ..] => mk(None, resource, Some(name), Some("proxy")),
        [resource] => mk(None, resource, None, None),
        [resource, name] => mk(None, resource, Some(name), None),
        [resource, name, sub] => mk(None, resource, Some(name), Some(sub)),
        _ => Path::Other(path.to_string()),
    }
}

/// Query parameters, decoded. Repeated keys keep the last value.
#[derive(Clone, Debug, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(form_decode(k), form_decode(v));
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "t" | "True"))
    }
}

fn form_decode(s: &str) -> String {
    percent_decode(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse_path(path) {
            Path::Resource(r) => r,
            other => panic!("{path} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_namespaced_and_cluster_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!((r.group.as_str(), r.version.as_str()), ("", "v1"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("pods", Some("web"), Some("status"))
        );

        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("kube-system"))
        );

        let r = res("/api/v1/namespaces/x/finalize");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("x"), Some("finalize"))
        );

        let r = res("/apis/apps/v1/namespaces/default/deployments");
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.name),
            ("apps", "deployments", None)
        );

        let r = res("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aadmin");
        assert_eq!(r.name.as_deref(), Some("system:admin"));

        let r = res("/api/v1/watch/namespaces/default/configmaps");
        assert!(r.legacy_watch);
        assert_eq!(r.resource, "configmaps");

        // The proxy subresource takes the rest of the path as the proxied path.
        for (path, ns, resource, name) in [
            (
                "/api/v1/namespaces/d/pods/web:8080/proxy/a/b",
                Some("d"),
                "pods",
                "web:8080",
            ),
            (
                "/api/v1/namespaces/d/services/s/proxy/",
                Some("d"),
                "services",
                "s",
            ),
            ("/api/v1/nodes/n1/proxy/stats/summary", None, "nodes", "n1"),
        ] {
            let r = res(path);
            assert_eq!(
                (
                    r.namespace.as_deref(),
                    r.resource.as_str(),
                    r.name.as_deref()
                ),
                (ns, resource, Some(name)),
                "{path}"
            );
            assert_eq!(r.subresource.as_deref(), Some("proxy"), "{path}");
        }
    }

    #[test]
    fn parses_discovery_paths() {
        assert_eq!(parse_path("/api"), Path::DiscoveryRoot { core: true });
        assert_eq!(parse_path("/apis/"), Path::DiscoveryRoot { core: false });
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Path::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse_path("/version"), Path::Other("/version".into()));
    }

    #[test]
    fn query_values_are_form_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=true&limit=500",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(!q.flag("missing"));
    }

    #[test]
    fn percent_decoding_is_lenient_and_plus_is_a_space_only_in_forms() {
        for (input, form, plain) in [
            ("a%3Db", "a=b", "a=b"),
            ("a+b%2B", "a b+", "a+b+"),
            ("100%", "100%", "100%"),
            ("%zz%4", "%zz%4", "%zz%4"),
            ("%aé", "%aé", "%aé"),
        ] {
            assert_eq!(percent_decode(input, true), form, "{input} as a form");
            assert_eq!(percent_decode(input, false), plain, "{input}");
        }
    }
}
