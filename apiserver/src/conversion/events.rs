//! events.k8s.io/v1 Event as a view of core/v1 Event, with upstream's field mapping
//! (`pkg/apis/events/v1/conversion.go`): the two differ only in names.

use serde_json::{Map, Value};

/// (core/v1 field, events.k8s.io/v1 field) for every field whose name differs; the
/// rest (`related`, `reportingInstance`, `eventTime`, `series`, `action`, `type`,
/// `reason`, metadata) are the same in both.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// events.k8s.io/v1 selectable fields and the core/v1 fields they select on.
pub(super) const FIELDS: &[(&str, &str)] = &[
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.remove(from) {
        obj.insert(to.to_string(), v);
    }
}

/// A core/v1 Event as events.k8s.io/v1 serves it.
pub(super) fn from_core(obj: &mut Map<String, Value>) {
    for (core, events) in RENAMED {
        rename(obj, core, events);
    }
}

/// An events.k8s.io/v1 Event as core/v1 stores it. `involvedObject` is a required
/// struct of core/v1 (always present in upstream's JSON, if empty).
pub(super) fn to_core(obj: &mut Map<String, Value>) {
    for (core, events) in RENAMED {
        rename(obj, events, core);
    }
    obj.entry("involvedObject")
        .or_insert_with(|| Value::Object(Map::new()));
}
