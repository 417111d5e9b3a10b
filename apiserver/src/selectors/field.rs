//! Field selectors: parsing (`a=b`, `a==b`, `a!=b`, comma-separated, `\` escapes), per-resource supported fields, matching.

use serde_json::Value;

use super::SelectorError;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    value: String,
    negated: bool,
}

/// A parsed field selector for one resource. An empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    group: String,
    resource: String,
    terms: Vec<Term>,
}

/// The fields upstream lets one select on for `group`/`resource`, beyond
/// `metadata.name` and `metadata.namespace` which every resource supports.
fn kind_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "replicationcontrollers")
        | ("apps", "replicasets")
        | ("extensions", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("certificates.k8s.io", "certificatesigningrequests")
        | ("certificates.k8s.io", "clustertrustbundles") => &["spec.signerName"],
        _ => &[],
    }
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn bool_text(v: Option<&Value>) -> String {
    v.and_then(Value::as_bool).unwrap_or(false).to_string()
}

fn int_text(v: Option<&Value>) -> String {
    v.and_then(Value::as_i64).unwrap_or(0).to_string()
}

/// The value of a selectable field, computed as upstream's ToSelectableFields;
/// absent fields read as "".
fn field_value(group: &str, resource: &str, field: &str, obj: &Value) -> String {
    match (group, resource, field) {
        (_, _, "metadata.name") => text(str_at(obj, &["metadata", "name"])),
        (_, _, "metadata.namespace") => text(str_at(obj, &["metadata", "namespace"])),
        ("", "pods", "spec.hostNetwork") => bool_text(str_at(obj, &["spec", "hostNetwork"])),
        ("", "pods", "status.podIP") => {
            let first = str_at(obj, &["status", "podIPs"])
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|p| p.get("ip"));
            match first {
                Some(ip) => text(Some(ip)),
                None => text(str_at(obj, &["status", "podIP"])),
            }
        }
        ("", "events", "source") => text(str_at(obj, &["source", "component"])),
        ("", "events", "reportingComponent") => text(obj.get("reportingComponent")),
        ("", "nodes", "spec.unschedulable") => bool_text(str_at(obj, &["spec", "unschedulable"])),
        (_, _, "status.replicas") => int_text(str_at(obj, &["status", "replicas"])),
        ("batch", "jobs", "status.successful") => int_text(str_at(obj, &["status", "succeeded"])),
        _ => {
            let path: Vec<&str> = field.split('.').collect();
            text(str_at(obj, &path))
        }
    }
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Finds the first unescaped operator, trying `!=`, `==`, `=` at each position.
fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    let b = term.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', '=', ',']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError::new(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    )))
                }
                None => {
                    return Err(SelectorError::new(
                        "invalid field selector: invalid escape sequence: \\".to_string(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The terms of a field selector as `(field, value, negated)`, sorted, whatever the
/// fields (upstream's `fields.ParseSelector`: what authorizers are shown).
pub fn parse_terms(s: &str) -> Result<Vec<(String, String, bool)>, SelectorError> {
    let mut parts = split_terms(s);
    parts.sort();
    let mut terms = Vec::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        let Some((lhs, op, rhs)) = split_term(part) else {
            return Err(SelectorError::new(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            )));
        };
        terms.push((lhs.to_string(), unescape(rhs)?, op == "!="));
    }
    Ok(terms)
}

impl FieldSelector {
    /// Parses a `fieldSelector` for the given API group ("" for core) and
    /// plural resource, rejecting fields that resource does not support.
    pub fn parse(s: &str, group: &str, resource: &str) -> Result<Self, SelectorError> {
        Self::parse_with_fields(s, group, resource, &[])
    }

    /// Like [`FieldSelector::parse`], additionally accepting `extra_fields`
    /// (e.g. a CRD version's `selectableFields` paths without the leading
    /// dot, such as `spec.color`), read from the object by path.
    pub fn parse_with_fields(
        s: &str,
        group: &str,
        resource: &str,
        extra_fields: &[&str],
    ) -> Result<Self, SelectorError> {
        let terms: Vec<Term> = parse_terms(s)?
            .into_iter()
            .map(|(field, value, negated)| Term {
                field,
                value,
                negated,
            })
            .collect();
        let supported = kind_fields(group, resource);
        for t in &terms {
            let ok = t.field == "metadata.name"
                || t.field == "metadata.namespace"
                || supported.contains(&t.field.as_str())
                || extra_fields.contains(&t.field.as_str());
            if !ok {
                return Err(SelectorError::new(format!(
                    "field label not supported: {}",
                    t.field
                )));
            }
        }
        Ok(Self {
            group: group.to_string(),
            resource: resource.to_string(),
            terms,
        })
    }

    /// The same selector for the objects of `group`/`resource`, each field named in
    /// `fields` (served name, other resource's name) renamed: a view's selector run
    /// against the objects of the store it is a view of.
    pub fn renamed(mut self, group: &str, resource: &str, fields: &[(&str, &str)]) -> Self {
        for t in &mut self.terms {
            if let Some((_, to)) = fields.iter().find(|(from, _)| *from == t.field) {
                t.field = to.to_string();
            }
        }
        self.group = group.to_string();
        self.resource = resource.to_string();
        self
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let have = field_value(&self.group, &self.resource, &t.field, obj);
            (have == t.value) != t.negated
        })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The name when the selector is exactly `metadata.name=X` (or `==`).
    pub fn single_name(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [t] if !t.negated && t.field == "metadata.name" => Some(&t.value),
            _ => None,
        }
    }

    /// The value a selector requires for `field` with `=`/`==`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == field)
            .map(|t| t.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "prod"},
            "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}
        })
    }

    #[test]
    fn pod_field_matching_table() {
        let cases = [
            ("name_equals", "metadata.name=web-1", true),
            ("name_double_equals", "metadata.name==web-1", true),
            ("name_not_equals", "metadata.name!=web-1", false),
            ("namespace_equals", "metadata.namespace=prod", true),
            ("node_name", "spec.nodeName=node-a", true),
            ("node_name_other", "spec.nodeName=node-b", false),
            (
                "phase_and_node",
                "status.phase=Running,spec.nodeName=node-a",
                true,
            ),
            ("phase_not_running", "status.phase!=Running", false),
            ("pod_ip_from_pod_ips", "status.podIP=10.0.0.5", true),
            (
                "host_network_defaults_false",
                "spec.hostNetwork=false",
                true,
            ),
            (
                "missing_field_is_empty_string",
                "status.nominatedNodeName=",
                true,
            ),
            (
                "missing_field_not_equal_value",
                "status.nominatedNodeName!=x",
                true,
            ),
            ("restart_policy", "spec.restartPolicy=Always", true),
            ("empty_selector", "", true),
        ];
        let obj = pod();
        for (name, sel, want) in cases {
            let s = FieldSelector::parse(sel, "", "pods").unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.matches(&obj), want, "{name}");
        }
    }

    #[test]
    fn kind_specific_fields_table() {
        let cases = [
            (
                "secret_type",
                "",
                "secrets",
                "type=Opaque",
                json!({"type": "Opaque"}),
                true,
            ),
            (
                "namespace_phase",
                "",
                "namespaces",
                "status.phase=Active",
                json!({"status": {"phase": "Active"}}),
                true,
            ),
            (
                "node_unschedulable_true",
                "",
                "nodes",
                "spec.unschedulable=true",
                json!({"spec": {"unschedulable": true}}),
                true,
            ),
            (
                "node_unschedulable_default",
                "",
                "nodes",
                "spec.unschedulable=false",
                json!({"spec": {}}),
                true,
            ),
            (
                "rs_replicas",
                "apps",
                "replicasets",
                "status.replicas=3",
                json!({"status": {"replicas": 3}}),
                true,
            ),
            (
                "rc_replicas_missing_zero",
                "",
                "replicationcontrollers",
                "status.replicas=0",
                json!({}),
                true,
            ),
            (
                "job_successful",
                "batch",
                "jobs",
                "status.successful=1",
                json!({"status": {"succeeded": 1}}),
                true,
            ),
            (
                "service_type",
                "",
                "services",
                "spec.type=ClusterIP",
                json!({"spec": {"type": "ClusterIP"}}),
                true,
            ),
            (
                "service_cluster_ip",
                "",
                "services",
                "spec.clusterIP=None",
                json!({"spec": {"clusterIP": "None"}}),
                true,
            ),
            (
                "csr_signer",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "spec.signerName=a/b",
                json!({"spec": {"signerName": "a/b"}}),
                true,
            ),
            (
                "event_involved_kind",
                "",
                "events",
                "involvedObject.kind=Pod,involvedObject.name=p",
                json!({"involvedObject": {"kind": "Pod", "name": "p"}}),
                true,
            ),
            (
                "event_source",
                "",
                "events",
                "source=kubelet",
                json!({"source": {"component": "kubelet"}}),
                true,
            ),
            (
                "event_reporting_component",
                "",
                "events",
                "reportingComponent=ctl",
                json!({"reportingComponent": "ctl"}),
                true,
            ),
            (
                "crd_name_only",
                "example.com",
                "widgets",
                "metadata.name=w",
                json!({"metadata": {"name": "w"}}),
                true,
            ),
        ];
        for (name, group, resource, sel, obj, want) in cases {
            let s = FieldSelector::parse(sel, group, resource)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.matches(&obj), want, "{name}");
        }
    }

    #[test]
    fn parse_errors_table() {
        let cases = [
            (
                "unsupported_field",
                "spec.foo=bar",
                "",
                "pods",
                "field label not supported: spec.foo",
            ),
            (
                "unsupported_on_configmaps",
                "type=x",
                "",
                "configmaps",
                "field label not supported: type",
            ),
            (
                "no_operator",
                "metadata.name",
                "",
                "pods",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            (
                "bad_escape",
                "metadata.name=a\\x",
                "",
                "pods",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "unescaped_equals",
                "metadata.name=a=b",
                "",
                "pods",
                "invalid field selector: unescaped character in value: 61",
            ),
        ];
        for (name, sel, group, resource, want) in cases {
            let err = FieldSelector::parse(sel, group, resource).expect_err(name);
            assert_eq!(err.message(), want, "{name}");
        }
    }

    #[test]
    fn escaped_value_matches() {
        let s =
            FieldSelector::parse("metadata.name=a\\,b", "", "pods").expect("escaped_value_matches");
        assert!(
            s.matches(&json!({"metadata": {"name": "a,b"}})),
            "escaped_value_matches"
        );
    }

    #[test]
    fn crd_selectable_fields() {
        let obj =
            json!({"metadata": {"name": "w"}, "spec": {"color": "blue", "size": 3, "on": true}});
        let cases = [
            ("string_field", "spec.color=blue", true),
            ("integer_field", "spec.size=3", true),
            ("boolean_field", "spec.on=true", true),
            ("string_mismatch", "spec.color=red", false),
        ];
        let extra = ["spec.color", "spec.size", "spec.on"];
        for (name, sel, want) in cases {
            let s = FieldSelector::parse_with_fields(sel, "example.com", "widgets", &extra)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.matches(&obj), want, "{name}");
        }
        let err =
            FieldSelector::parse_with_fields("spec.other=x", "example.com", "widgets", &extra)
                .expect_err("undeclared_field");
        assert_eq!(
            err.message(),
            "field label not supported: spec.other",
            "undeclared_field"
        );
    }

    #[test]
    fn single_name_table() {
        let cases = [
            ("plain_name", "metadata.name=foo", Some("foo")),
            ("double_equals_name", "metadata.name==foo", Some("foo")),
            ("negated_name", "metadata.name!=foo", None),
            (
                "name_and_more",
                "metadata.name=foo,metadata.namespace=x",
                None,
            ),
            ("other_field", "metadata.namespace=x", None),
            ("empty", "", None),
        ];
        for (name, sel, want) in cases {
            let s = FieldSelector::parse(sel, "", "configmaps")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.single_name(), want, "{name}");
        }
    }
}
