//! The downward API: a pod's own fields (`fieldRef`) and a container's resources
//! (`resourceFieldRef`) as text, formatted as the kubelet formats them, for env values and
//! downwardAPI volume files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity::{divide_cpu, divide_units, parse_nanos};

/// The value of a `fieldRef` path for `pod`. Maps (all labels, all annotations) are one
/// `key="value"` line per entry, sorted by key, values quoted as Go's `%q` does.
pub fn field_value(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let path = selector.field_path.as_str();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(annotations.get(key).cloned().unwrap_or_default());
    }
    let pod_ips = || -> Vec<String> {
        let status = status.into_iter();
        let ips: Vec<String> = status
            .clone()
            .flat_map(|s| s.pod_ips.iter().flatten().map(|ip| ip.ip.clone()))
            .collect();
        if ips.is_empty() {
            status.filter_map(|s| s.pod_ip.clone()).collect()
        } else {
            ips
        }
    };
    let host_ips = || -> Vec<String> {
        let status = status.into_iter();
        let ips: Vec<String> = status
            .clone()
            .flat_map(|s| s.host_ips.iter().flatten().map(|ip| ip.ip.clone()))
            .collect();
        if ips.is_empty() {
            status.filter_map(|s| s.host_ip.clone()).collect()
        } else {
            ips
        }
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(labels),
        "metadata.annotations" => format_map(annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ips().into_iter().next().unwrap_or_default(),
        "status.podIPs" => pod_ips().join(","),
        "status.hostIP" => host_ips().into_iter().next().unwrap_or_default(),
        "status.hostIPs" => host_ips().join(","),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// `metadata.labels['app']` → `app`.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path
        .strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")?;
    Some(inner)
}

/// `key="value"` lines sorted by key, no trailing newline, as upstream's `FormatMap`.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted as Go's `strconv.Quote` (`%q`) writes it.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c.is_whitespace() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a `resourceFieldRef` for `container`. Limits that are not set default to
/// the node's allocatable amount (`allocatable`), requests that are not set to the limit
/// the API would have defaulted them to, else zero. The divisor defaults to `1`.
pub fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let divisor = match &selector.divisor {
        Some(q) if parse_nanos(&q.0) != Some(0) => {
            parse_nanos(&q.0).ok_or_else(|| format!("invalid divisor {:?}", q.0))?
        }
        _ => 1_000_000_000,
    };
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let resources = container.resources.as_ref();
    let limit = resources
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(resource));
    let request = resources
        .and_then(|r| r.requests.as_ref())
        .and_then(|l| l.get(resource));
    let supported = matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        || resource.starts_with("hugepages-") && kind == "requests";
    if !supported {
        return Err(format!(
            "unsupported container resource : {}",
            selector.resource
        ));
    }
    let quantity = match kind {
        "limits" => limit.or_else(|| allocatable.get(resource)),
        "requests" => request.or(limit),
        _ => {
            return Err(format!(
                "unsupported container resource : {}",
                selector.resource
            ))
        }
    };
    let value = match quantity {
        Some(q) => parse_nanos(&q.0).ok_or_else(|| format!("invalid quantity {:?}", q.0))?,
        None => 0,
    };
    let result = if resource == "cpu" {
        divide_cpu(value, divisor)
    } else {
        divide_units(value, divisor)
    };
    result
        .map(|v| v.to_string())
        .ok_or_else(|| "divisor rounds to zero".to_string())
}

/// The container of `pod` named `name`, among init and regular containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-0", "namespace": "shop", "uid": "1234",
                "labels": { "tier": "front", "app": "web" },
                "annotations": { "note": "say \"hi\"\n\tbye", "b": "ü" },
            },
            "spec": { "nodeName": "n1", "serviceAccountName": "builder", "containers": [] },
            "status": {
                "podIP": "10.42.0.5",
                "podIPs": [{ "ip": "10.42.0.5" }, { "ip": "fd00::5" }],
                "hostIP": "192.168.1.2",
            },
        }))
        .unwrap()
    }

    #[test]
    fn formats_pod_fields_as_the_kubelet() {
        let cases = [
            ("name", "metadata.name", "web-0"),
            ("namespace", "metadata.namespace", "shop"),
            ("uid", "metadata.uid", "1234"),
            (
                "labels sorted, quoted",
                "metadata.labels",
                "app=\"web\"\ntier=\"front\"",
            ),
            (
                "annotations escaped as Go %q",
                "metadata.annotations",
                "b=\"ü\"\nnote=\"say \\\"hi\\\"\\n\\tbye\"",
            ),
            ("one label", "metadata.labels['tier']", "front"),
            ("missing label is empty", "metadata.labels['nope']", ""),
            ("one annotation verbatim", "metadata.annotations['b']", "ü"),
            ("node", "spec.nodeName", "n1"),
            ("service account", "spec.serviceAccountName", "builder"),
            ("pod IP", "status.podIP", "10.42.0.5"),
            ("pod IPs", "status.podIPs", "10.42.0.5,fd00::5"),
            ("host IP from hostIP alone", "status.hostIP", "192.168.1.2"),
            (
                "host IPs from hostIP alone",
                "status.hostIPs",
                "192.168.1.2",
            ),
        ];
        for (name, path, want) in cases {
            let selector = ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            };
            assert_eq!(
                field_value(&pod(), &selector).as_deref(),
                Ok(want),
                "{name}"
            );
        }
        let bad = ObjectFieldSelector {
            field_path: "spec.hostname".into(),
            ..Default::default()
        };
        assert_eq!(
            field_value(&pod(), &bad),
            Err("unsupported fieldPath: spec.hostname".into())
        );
    }

    #[test]
    fn quotes_like_go() {
        let cases = [
            ("plain", "abc", "\"abc\""),
            ("quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\""),
            ("control byte", "\u{1}", "\"\\x01\""),
            ("delete", "\u{7f}", "\"\\x7f\""),
            ("non-breaking space", "\u{a0}", "\"\\u00a0\""),
            ("emoji kept", "🙂", "\"🙂\""),
        ];
        for (name, input, want) in cases {
            assert_eq!(go_quote(input), want, "{name}");
        }
    }

    #[test]
    fn resolves_resource_fields_with_divisors_and_defaults() {
        let container: Container = serde_json::from_value(json!({
            "name": "app",
            "resources": {
                "limits": { "cpu": "500m", "memory": "128Mi" },
                "requests": { "cpu": "250m" },
            },
        }))
        .unwrap();
        let unlimited: Container = serde_json::from_value(json!({ "name": "free" })).unwrap();
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
        ]);
        let cases = [
            (
                "cpu limit rounds up to a core",
                &container,
                "limits.cpu",
                None,
                "1",
            ),
            (
                "cpu limit in millicores",
                &container,
                "limits.cpu",
                Some("1m"),
                "500",
            ),
            (
                "memory limit in bytes",
                &container,
                "limits.memory",
                None,
                "134217728",
            ),
            (
                "memory limit in Mi",
                &container,
                "limits.memory",
                Some("1Mi"),
                "128",
            ),
            ("cpu request", &container, "requests.cpu", Some("1m"), "250"),
            (
                "memory request defaults to the limit",
                &container,
                "requests.memory",
                Some("1Mi"),
                "128",
            ),
            (
                "no limit: node allocatable cpu",
                &unlimited,
                "limits.cpu",
                None,
                "4",
            ),
            (
                "no limit: node allocatable memory",
                &unlimited,
                "limits.memory",
                Some("1Gi"),
                "8",
            ),
            ("no request: zero", &unlimited, "requests.cpu", None, "0"),
        ];
        for (name, c, resource, divisor, want) in cases {
            let selector = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                ..Default::default()
            };
            assert_eq!(
                resource_value(&selector, c, &allocatable).as_deref(),
                Ok(want),
                "{name}"
            );
        }
        let bad = ResourceFieldSelector {
            resource: "limits.gpu".into(),
            ..Default::default()
        };
        assert!(
            resource_value(&bad, &container, &allocatable).is_err(),
            "unknown resource"
        );
    }
}
