//! Upstream's Pod Security Standards checks (k8s.io/pod-security-admission `policy`,
//! v1.33) over a pod's metadata and spec as JSON, and the evaluator that picks the
//! checks of a level and version: baseline checks for baseline; for restricted, the
//! restricted checks plus the baseline ones they do not replace. Each check has
//! versions (the policy version a revision starts at); a version newer than the newest
//! revision, and `latest`, evaluate the newest.

use std::collections::BTreeSet;

use serde_json::Value;

use super::policy::{Level, LevelVersion, Version};

mod baseline;
mod restricted;

/// Why a check refused a pod: a short reason and, optionally, which containers or
/// values made it refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Forbidden {
    pub(super) reason: String,
    pub(super) detail: String,
}

impl Forbidden {
    fn new(reason: impl Into<String>, detail: impl Into<String>) -> Option<Self> {
        Some(Forbidden {
            reason: reason.into(),
            detail: detail.into(),
        })
    }
}

/// A check of one revision: the pod's metadata and spec in, a refusal out.
type CheckFn = fn(&Value, &Value) -> Option<Forbidden>;

struct Revision {
    /// The first policy version (`v1.<min>`) this revision applies to.
    min: u32,
    check: CheckFn,
    /// Baseline checks this restricted check replaces while it applies.
    overrides: &'static [&'static str],
}

struct Check {
    id: &'static str,
    /// Revisions in increasing `min` order.
    revisions: &'static [Revision],
}

impl Check {
    /// The revision that applies at `v1.<minor>`, if the check exists by then.
    fn at(&self, minor: u32) -> Option<&Revision> {
        self.revisions.iter().rev().find(|r| r.min <= minor)
    }
}

/// The newest minor version any check has a revision for (sysctls, v1.32); newer
/// versions and `latest` evaluate as this one.
const NEWEST_MINOR: u32 = 32;

/// Every check's results for a pod at `lv`, in upstream's order (baseline checks by id,
/// then restricted checks by id); empty when the pod is allowed.
pub(super) fn evaluate(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Forbidden> {
    let minor = match lv.version {
        Version::Minor(m) => m.min(NEWEST_MINOR),
        Version::Latest => NEWEST_MINOR,
    };
    let restricted: &[Check] = match lv.level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => &[],
        Level::Restricted => restricted::CHECKS,
    };
    let overridden: Vec<&str> = restricted
        .iter()
        .filter_map(|c| c.at(minor))
        .flat_map(|r| r.overrides.iter().copied())
        .collect();
    let baseline = baseline::CHECKS
        .iter()
        .filter(|c| !overridden.contains(&c.id));
    baseline
        .chain(restricted)
        .filter_map(|c| c.at(minor))
        .filter_map(|r| (r.check)(meta, spec))
        .collect()
}

/// `reason (detail), reason, ...`: what an individual pod is told (upstream's
/// `ForbiddenDetail`).
pub(super) fn forbidden_detail(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|f| {
            if f.detail.is_empty() {
                f.reason.clone()
            } else {
                format!("{} ({})", f.reason, f.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reason, reason, ...`: what a namespace's existing pods are summed up by (upstream's
/// `ForbiddenReason`).
pub(super) fn forbidden_reason(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|f| f.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every container of the spec: init containers, containers, ephemeral containers.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(|field| list(spec.get(field)))
}

fn list(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

fn name(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The field at `pointer`, unless it is missing or null (Go's nil pointer).
fn field<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|v| !v.is_null())
}

fn is_true(v: &Value, pointer: &str) -> bool {
    field(v, pointer).and_then(Value::as_bool) == Some(true)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    field(v, pointer).and_then(Value::as_str).unwrap_or("")
}

/// The names of the containers `bad` picks.
fn containers_where(spec: &Value, mut bad: impl FnMut(&Value) -> bool) -> Vec<String> {
    containers(spec)
        .filter(|c| bad(c))
        .map(|c| name(c).to_string())
        .collect()
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `"a", "b"` (upstream's `joinQuote`, no escaping).
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    quoted.join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// The things that set a bad value (`pod`, `containers "a", "b"`), joined with " and ".
fn setters(pod: bool, containers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(containers_phrase(containers));
    }
    out
}

/// Whether the pod says it runs on Windows (`spec.os.name`), which the restricted
/// Linux-only checks leave alone from v1.25.
fn windows(spec: &Value) -> bool {
    str_at(spec, "/os/name") == "windows"
}

/// A string quoted as Go's `%q` prints it (printable characters as they are).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The sorted, deduplicated set of `values` (Go's `sets.String.List()`).
fn sorted(values: impl IntoIterator<Item = String>) -> Vec<String> {
    values
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests;
