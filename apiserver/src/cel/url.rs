//! Upstream's Kubernetes URL library for CEL: `isURL(s)`, `url(s)` and, on a URL,
//! `getScheme()`, `getHost()`, `getHostname()`, `getPort()`, `getEscapedPath()` and
//! `getQuery()`. What parses is what Go's `url.ParseRequestURI` takes: an absolute
//! URI (`scheme:` then `//authority/path?query`, or an opaque rest) or an absolute
//! path; a `#fragment` is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::ExecutionError;

use super::Value;

/// A parsed URL as a CEL value.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    /// `host[:port]`, without user information.
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Parses `s` as Go's `ParseRequestURI` would, or says why not as it does.
fn parse(s: &str) -> Result<Url, String> {
    let invalid = || format!("parse {}: invalid URI for request", serde_json::json!(s));
    let s_no_fragment = s.split_once('#').map_or(s, |(before, _)| before);
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid());
    }
    let (scheme, rest) = match s_no_fragment.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (scheme.to_ascii_lowercase(), rest),
        _ if s_no_fragment.starts_with('/') => (String::new(), s_no_fragment),
        _ => return Err(invalid()),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !rest.starts_with('/') {
        // `scheme:opaque`: no host, no path.
        return if scheme.is_empty() {
            Err(invalid())
        } else {
            Ok(Url {
                scheme,
                host: String::new(),
                path: String::new(),
                query: query.to_string(),
            })
        };
    }
    let (host, path) = match rest.strip_prefix("//") {
        Some(authority_and_path) if !scheme.is_empty() => {
            let end = authority_and_path
                .find('/')
                .unwrap_or(authority_and_path.len());
            let authority = &authority_and_path[..end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (host.to_string(), authority_and_path[end..].to_string())
        }
        _ => (String::new(), rest.to_string()),
    };
    Ok(Url {
        scheme,
        host,
        path,
        query: query.to_string(),
    })
}

impl Url {
    /// The host without its port (and an IPv6 address without brackets).
    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(h, _)| h);
        }
        self.host.split_once(':').map_or(&self.host, |(h, _)| h)
    }

    fn port(&self) -> &str {
        let after = match self.host.rfind(']') {
            Some(i) => &self.host[i + 1..],
            None => &self.host,
        };
        after.split_once(':').map_or("", |(_, p)| p)
    }

    /// The query's values by key, decoded as Go's `url.Query`.
    fn query(&self) -> Value {
        let mut values: HashMap<String, Vec<Value>> = HashMap::new();
        for pair in self.query.split(['&', ';']).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            values
                .entry(crate::request::percent_decode(k, true))
                .or_default()
                .push(Value::String(Arc::new(crate::request::percent_decode(
                    v, true,
                ))));
        }
        let map: HashMap<String, Value> = values
            .into_iter()
            .map(|(k, v)| (k, Value::List(Arc::new(v))))
            .collect();
        Value::from(map)
    }
}

fn of(function: &str, v: &Arc<dyn Opaque>) -> Result<Arc<dyn Opaque>, ExecutionError> {
    if v.downcast_ref::<Url>().is_some() {
        Ok(Arc::clone(v))
    } else {
        Err(ExecutionError::no_such_overload(
            function,
            vec![v.runtime_type_name().into()],
        ))
    }
}

fn string(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

/// Adds the library's functions to `context`.
pub(super) fn install(context: &mut cel::Context<'_, '_>) {
    // Names no standard overload uses, so adding them cannot fail.
    let _ = context.add_function("isURL", |s: Arc<String>| -> bool { parse(&s).is_ok() });
    let _ = context.add_function("url", |s: Arc<String>| -> Result<Value, ExecutionError> {
        parse(&s).map(|u| Value::Opaque(Arc::new(u))).map_err(|e| {
            ExecutionError::function_error(
                "url",
                format!("URL parse error during conversion from string: {e}"),
            )
        })
    });
    type Getter = fn(&Url) -> Value;
    let getters: [(&str, Getter); 6] = [
        ("getScheme", |u| string(&u.scheme)),
        ("getHost", |u| string(&u.host)),
        ("getHostname", |u| string(u.hostname())),
        ("getPort", |u| string(u.port())),
        ("getEscapedPath", |u| string(&u.path)),
        ("getQuery", Url::query),
    ];
    for (name, get) in getters {
        let _ = context.add_function(
            name,
            move |This(u): This<Arc<dyn Opaque>>| -> Result<Value, ExecutionError> {
                let u = of(name, &u)?;
                Ok(get(u.downcast_ref::<Url>().expect("checked by `of`")))
            },
        );
    }
}
