//! JSON forms of the apimachinery messages that are not plain objects: Quantity, IntOrString,
//! Time, MicroTime, Duration, RawExtension, FieldsV1, the `ExtraValue` string lists and
//! apiextensions' JSON and JSONSchemaProps* unions.

use serde_json::Value;

/// Messages handled here, by full name.
pub(super) const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
pub(super) const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
pub(super) const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
pub(super) const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
pub(super) const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";
pub(super) const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
pub(super) const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const APIEXT: &str = "apiextensions_apiserver.pkg.apis.apiextensions.v1.";
/// `ExtraValue` (`user.extra` values of reviews and CSRs): a Go `[]string`, a message with
/// one repeated field in protobuf and a plain list in JSON.
const EXTRA_VALUES: [&str; 3] = [
    "api.authentication.v1.ExtraValue",
    "api.authorization.v1.ExtraValue",
    "api.certificates.v1.ExtraValue",
];

/// Which special form a message has, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    Quantity,
    IntOrString,
    Time,
    MicroTime,
    Duration,
    /// Field 1 holds raw JSON (RawExtension, FieldsV1, apiextensions JSON).
    RawJson,
    /// JSONSchemaPropsOrArray: 1 schema, 2 repeated schemas.
    SchemaOrArray,
    /// JSONSchemaPropsOrBool: 1 allows, 2 schema.
    SchemaOrBool,
    /// JSONSchemaPropsOrStringArray: 1 schema, 2 repeated string.
    SchemaOrStringArray,
    /// A named string list (`ExtraValue`): 1 repeated string, a JSON array.
    StringList,
}

impl Special {
    pub(super) fn of(message: &str) -> Option<Special> {
        Some(match message {
            QUANTITY => Special::Quantity,
            INT_OR_STRING => Special::IntOrString,
            TIME => Special::Time,
            MICRO_TIME => Special::MicroTime,
            DURATION => Special::Duration,
            FIELDS_V1 | RAW_EXTENSION => Special::RawJson,
            m if EXTRA_VALUES.contains(&m) => Special::StringList,
            m => match m.strip_prefix(APIEXT) {
                Some("Json") => Special::RawJson,
                Some("JsonSchemaPropsOrArray") => Special::SchemaOrArray,
                Some("JsonSchemaPropsOrBool") => Special::SchemaOrBool,
                Some("JsonSchemaPropsOrStringArray") => Special::SchemaOrStringArray,
                _ => return None,
            },
        })
    }
}

impl Special {
    /// Whether `tag` is one of this message's fields (others are skipped as unknown).
    pub(super) fn has_field(self, tag: u32) -> bool {
        match self {
            Special::Quantity | Special::Duration | Special::RawJson | Special::StringList => {
                tag == 1
            }
            Special::IntOrString => (1..=3).contains(&tag),
            _ => (1..=2).contains(&tag),
        }
    }
}

/// RFC 3339 in UTC, as metav1.Time (`micros: false`, whole seconds) or MicroTime (6 digits).
pub(super) fn rfc3339(seconds: i64, nanos: i32, micros: bool) -> String {
    let whole = crate::object::rfc3339(seconds);
    if !micros {
        return whole;
    }
    format!(
        "{}.{:06}Z",
        whole.trim_end_matches('Z'),
        nanos.clamp(0, 999_999_999) / 1000
    )
}

/// `v` (in units of 10^-prec) as a decimal with trailing zeros trimmed: 1500, 3 -> "1.5".
fn decimal(v: u64, prec: u32) -> String {
    let p = 10u64.pow(prec);
    let frac = format!("{:0width$}", v % p, width = prec as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{}", v / p)
    } else {
        format!("{}.{frac}", v / p)
    }
}

/// A nanosecond count the way Go's `time.Duration.String` prints it: `1h2m3.5s`, `300ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let body = if u == 0 {
        "0s".to_owned()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", decimal(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", decimal(u, 6))
    } else {
        let secs = decimal(u % 60_000_000_000, 9);
        let mins = u / 60_000_000_000;
        match (mins / 60, mins % 60) {
            (0, 0) => format!("{secs}s"),
            (0, m) => format!("{m}m{secs}s"),
            (h, m) => format!("{h}h{m}m{secs}s"),
        }
    };
    format!("{sign}{body}")
}

/// A proto double as JSON: whole numbers as integers (as Go's encoder prints them).
pub(super) fn double(f: f64) -> Option<Value> {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        Some(Value::from(f as i64))
    } else {
        serde_json::Number::from_f64(f).map(Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339_in_utc() {
        assert_eq!(rfc3339(1_704_164_645, 0, false), "2024-01-02T03:04:05Z");
        assert_eq!(
            rfc3339(1_704_164_645, 123_456_789, true),
            "2024-01-02T03:04:05.123456Z"
        );
        assert_eq!(rfc3339(951_782_400, 0, false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, 0, false), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
    }

    #[test]
    fn whole_doubles_become_integers() {
        assert_eq!(double(5.0), Some(Value::from(5)));
        assert_eq!(double(0.5), Some(serde_json::json!(0.5)));
        assert_eq!(double(f64::NAN), None);
    }
}
