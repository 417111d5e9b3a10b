//! Object metadata validation with upstream's rules and messages: names, labels,
//! annotations.

use serde_json::Value;

use crate::status::Cause;

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Total size upstream allows for all annotations of one object.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Which rule a resource's object names follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// Any name usable as a URL path segment (RBAC objects: `system:controller:x`).
    PathSegment,
}

/// Upstream's name rule for a group/resource.
pub fn name_rule(group: &str, plural: &str) -> NameRule {
    match (group, plural) {
        ("", "namespaces") => NameRule::Dns1123Label,
        ("", "services") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

fn is_dns_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_label_chars(s)
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label_chars)
}

/// Problems with a name under a rule, as upstream's messages (empty when valid).
pub fn name_problems(rule: NameRule, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    match rule {
        NameRule::Dns1123Subdomain => {
            if name.len() > 253 {
                out.push("must be no more than 253 characters".to_string());
            }
            if !name.split('.').all(is_dns_label_chars) {
                out.push(DNS1123_SUBDOMAIN.to_string());
            }
        }
        NameRule::Dns1123Label | NameRule::Dns1035Label => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            let starts_alpha = name.bytes().next().is_some_and(|c| c.is_ascii_lowercase());
            if rule == NameRule::Dns1123Label && !is_dns_label_chars(name) {
                out.push(DNS1123_LABEL.to_string());
            } else if rule == NameRule::Dns1035Label && !(is_dns_label_chars(name) && starts_alpha)
            {
                out.push(DNS1035_LABEL.to_string());
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                out.push(format!("may not be '{name}'"));
            }
            for bad in ['/', '%'] {
                if name.contains(bad) {
                    out.push(format!("may not contain '{bad}'"));
                }
            }
        }
    }
    out
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && s.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label or annotation key (`prefix/name` or `name`).
pub fn key_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else if !is_dns1123_subdomain(p) {
            out.push(format!("prefix part {DNS1123_SUBDOMAIN}"));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_name_part(&name[..name.len().min(63)]) || name.contains('/') {
            out.push(QUALIFIED_NAME.to_string());
        }
    }
    out
}

/// Problems with a label value.
pub fn label_value_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(&value[..value.len().min(63)]) {
        out.push(LABEL_VALUE.to_string());
    }
    out
}

/// Validates `metadata` of an object about to be written: name, labels, annotations.
pub fn validate_metadata(obj: &Value, rule: NameRule) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for p in name_problems(rule, name) {
            causes.push(Cause::invalid("metadata.name", name, &p));
        }
    }
    if let Some(labels) = meta
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            for p in key_problems(k) {
                causes.push(Cause::invalid("metadata.labels", k, &p));
            }
            match v.as_str() {
                Some(s) => {
                    for p in label_value_problems(s) {
                        causes.push(Cause::invalid("metadata.labels", s, &p));
                    }
                }
                None => causes.push(Cause::invalid(
                    "metadata.labels",
                    &v.to_string(),
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(annotations) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in annotations {
            for p in key_problems(k) {
                causes.push(Cause::invalid("metadata.annotations", k, &p));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            causes.push(Cause::too_long(
                "metadata.annotations",
                &format!("must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn name_rules_match_upstream_examples() {
        let cases = [
            (
                "subdomain_with_dots_is_valid",
                NameRule::Dns1123Subdomain,
                "my.app-1",
                true,
            ),
            (
                "subdomain_rejects_uppercase",
                NameRule::Dns1123Subdomain,
                "Bad_Name",
                false,
            ),
            ("label_rejects_dots", NameRule::Dns1123Label, "a.b", false),
            (
                "label_accepts_leading_digit",
                NameRule::Dns1123Label,
                "123-abc",
                true,
            ),
            (
                "dns1035_rejects_leading_digit",
                NameRule::Dns1035Label,
                "1svc",
                false,
            ),
            (
                "rbac_allows_colons",
                NameRule::PathSegment,
                "system:controller:x",
                true,
            ),
            ("rbac_rejects_slash", NameRule::PathSegment, "a/b", false),
        ];
        for (name, rule, value, ok) in cases {
            assert_eq!(name_problems(rule, value).is_empty(), ok, "{name}");
        }
        assert_eq!(
            name_problems(NameRule::Dns1123Subdomain, &"a".repeat(254))[0],
            "must be no more than 253 characters"
        );
    }

    #[test]
    fn label_keys_and_values_follow_qualified_name_rules() {
        assert!(key_problems("app.kubernetes.io/name").is_empty());
        assert!(!key_problems("Bad Prefix/x").is_empty());
        assert!(!key_problems("-x").is_empty());
        assert!(label_value_problems("").is_empty());
        assert!(!label_value_problems("has space").is_empty());
    }

    #[test]
    fn missing_name_and_huge_annotations_are_reported() {
        let obj =
            json!({"metadata": {"annotations": {"big": "x".repeat(MAX_ANNOTATIONS_BYTES + 1)}}});
        let causes = validate_metadata(&obj, NameRule::Dns1123Subdomain);
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(
            causes[0].message,
            "Required value: name or generateName is required"
        );
        assert_eq!(
            causes[1].message,
            "Too long: must have at most 262144 bytes"
        );
    }
}
