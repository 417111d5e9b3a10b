//! What a log read asks for (the kubelet's containerLogs query, named as PodLogOptions) and
//! how it can fail.

use k8s_openapi::jiff::Timestamp;

use super::cri::LogStream;

/// A log read: upstream's PodLogOptions, less the container name (the path names it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send what the container writes until it exits.
    pub follow: bool,
    /// The previous instance of the container (restartCount - 1).
    pub previous: bool,
    /// Only the last N lines (records) of the log.
    pub tail_lines: Option<i64>,
    /// Only lines written at or after this time (`sinceSeconds` is turned into one).
    pub since: Option<Timestamp>,
    /// Prefix every line with its RFC3339Nano time and a space.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
    /// One stream only (`stream=Stdout|Stderr`); both when `None` (`All`).
    pub stream: Option<LogStream>,
}

/// Why a log cannot be read; the node API maps each to upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The query is invalid (400, reason BadRequest/Invalid); the text is upstream's.
    #[error("{0}")]
    Invalid(String),
    /// `previous` was asked but the container has no earlier instance (400 upstream).
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    PreviousNotFound { container: String, pod: String },
    /// There is no log of the container on this node (it never ran here).
    #[error("container {container:?} in pod {pod:?} is not available")]
    NotAvailable { container: String, pod: String },
    #[error("reading the log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl LogOptions {
    /// Parses the query string of a containerLogs request (`follow=true&tailLines=10`...),
    /// with upstream's validation. Unknown parameters are ignored, as upstream's decoder
    /// ignores them. `sinceSeconds` is taken relative to now.
    pub fn from_query(query: &str) -> Result<Self, LogError> {
        let mut opts = LogOptions::default();
        let mut since_seconds: Option<i64> = None;
        let mut since_time: Option<Timestamp> = None;
        let mut errors: Vec<String> = Vec::new();
        for (key, value) in crate::stream::form_urlencoded(query) {
            let key = key.as_str();
            match key {
                "follow" => opts.follow = parse_bool(key, &value)?,
                "previous" => opts.previous = parse_bool(key, &value)?,
                "timestamps" => opts.timestamps = parse_bool(key, &value)?,
                "tailLines" => opts.tail_lines = Some(parse_int(&value)?),
                "limitBytes" => opts.limit_bytes = Some(parse_int(&value)?),
                "sinceSeconds" => since_seconds = Some(parse_int(&value)?),
                "sinceTime" => {
                    since_time = Some(value.parse().map_err(|_| {
                        LogError::Invalid(format!(
                            "parsing time {value:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {value:?} as \"2006\""
                        ))
                    })?)
                }
                "stream" => {
                    opts.stream = match value.as_str() {
                        "" | "All" => None,
                        "Stdout" => Some(LogStream::Stdout),
                        "Stderr" => Some(LogStream::Stderr),
                        other => {
                            errors.push(format!(
                                "stream: Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
                            ));
                            None
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(n) = opts.tail_lines.filter(|n| *n < 0) {
            errors.push(format!(
                "tailLines: Invalid value: {n}: must be greater than or equal to 0"
            ));
        }
        if let Some(n) = opts.limit_bytes.filter(|n| *n < 1) {
            errors.push(format!(
                "limitBytes: Invalid value: {n}: must be greater than 0"
            ));
        }
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => errors.push(
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            ),
            (Some(n), None) if n < 1 => errors.push(format!(
                "sinceSeconds: Invalid value: {n}: must be greater than 0"
            )),
            (Some(n), None) => {
                opts.since = Some(
                    Timestamp::now()
                        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(n))
                        .unwrap_or(Timestamp::MIN),
                )
            }
            (None, t) => opts.since = t,
        }
        if opts.stream.is_some() && opts.tail_lines.is_some() {
            errors.push(
                "Forbidden: `tailLines` and specific `stream` are mutually exclusive for now"
                    .into(),
            );
        }
        if errors.is_empty() {
            Ok(opts)
        } else {
            Err(LogError::Invalid(errors.join(", ")))
        }
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, LogError> {
    match value {
        // A bare `follow` (no `=`) is true, as upstream's query decoder reads it.
        "" | "true" | "1" | "True" | "TRUE" | "t" | "T" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" | "F" => Ok(false),
        _ => Err(LogError::Invalid(format!(
            "{key}: strconv.ParseBool: parsing {value:?}: invalid syntax"
        ))),
    }
}

fn parse_int(value: &str) -> Result<i64, LogError> {
    value.parse().map_err(|_| {
        LogError::Invalid(format!(
            "strconv.ParseInt: parsing {value:?}: invalid syntax"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_parameters_are_read_by_their_pod_log_options_names() {
        let o = LogOptions::from_query(
            "follow=true&previous=1&timestamps=true&tailLines=10&limitBytes=500&sinceTime=2026-01-02T03%3A04%3A05Z&stream=All",
        )
        .unwrap();
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(o.limit_bytes, Some(500));
        assert_eq!(o.since, Some("2026-01-02T03:04:05Z".parse().unwrap()));
        assert_eq!(o.stream, None);
        assert_eq!(LogOptions::from_query("").unwrap(), LogOptions::default());
    }

    #[test]
    fn since_seconds_counts_back_from_now() {
        let o = LogOptions::from_query("sinceSeconds=60").unwrap();
        let ago = Timestamp::now().duration_since(o.since.unwrap());
        assert!(ago.as_secs() >= 60 && ago.as_secs() < 3600, "{ago:?}");
    }

    #[test]
    fn invalid_queries_get_upstreams_messages() {
        for (name, query, message) in [
            (
                "negative tail",
                "tailLines=-1",
                "tailLines: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                "zero limit",
                "limitBytes=0",
                "limitBytes: Invalid value: 0: must be greater than 0",
            ),
            (
                "zero sinceSeconds",
                "sinceSeconds=0",
                "sinceSeconds: Invalid value: 0: must be greater than 0",
            ),
            (
                "both since forms",
                "sinceSeconds=5&sinceTime=2026-01-02T03:04:05Z",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
            (
                "tail with one stream",
                "stream=Stderr&tailLines=1",
                "Forbidden: `tailLines` and specific `stream` are mutually exclusive for now",
            ),
            (
                "not a number",
                "tailLines=ten",
                "strconv.ParseInt: parsing \"ten\": invalid syntax",
            ),
        ] {
            match LogOptions::from_query(query) {
                Err(LogError::Invalid(m)) => assert_eq!(m, message, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_offset_in_since_time_survives_percent_encoding() {
        let o = LogOptions::from_query("sinceTime=2026-01-02T04%3A04%3A05%2B01%3A00").unwrap();
        assert_eq!(o.since, Some("2026-01-02T03:04:05Z".parse().unwrap()));
    }
}
