//! Content negotiation: what the client accepts (JSON, a Table, aggregated discovery)
//! and decoding of request bodies (JSON, YAML) within upstream's size limit.

use bytes::Bytes;
use serde_json::Value;

use crate::status::{ApiError, Result};

/// Upstream's limit on a request body (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What the `Accept` header asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    /// `application/json;as=Table;g=meta.k8s.io;v=v1` was offered.
    pub table: bool,
    /// The aggregated discovery version offered (`v2` or `v2beta1`), if any.
    pub aggregated_discovery: Option<String>,
    /// Some media type we can produce (JSON or a wildcard) was offered.
    pub json: bool,
    /// `application/json;as=PartialObjectMetadata(List);g=meta.k8s.io;v=v1` was offered:
    /// objects answer as PartialObjectMetadata, lists as PartialObjectMetadataList.
    pub metadata: bool,
    /// gnostic's protobuf OpenAPI v2 (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`)
    /// was offered with a quality above any JSON offer's: `/openapi/v2` answers in protobuf.
    pub openapi_v2_protobuf: bool,
}

/// The OpenAPI v2 protobuf media type in either spelling: with `@` (what client-go asks
/// for) or with `.` (what the server answers with).
fn is_openapi_v2_protobuf(media: &str) -> bool {
    media == super::openapi::V2_PROTOBUF
        || media == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
}

impl Accept {
    pub fn parse(header: &str) -> Accept {
        let mut accept = Accept::default();
        // Best quality offered for JSON and for the OpenAPI v2 protobuf (client-go sends
        // `...protobuf, application/json;q=0.9` or protobuf alone).
        let (mut json_q, mut openapi_pb_q) = (0.0f32, 0.0f32);
        if header.trim().is_empty() {
            accept.json = true;
            return accept;
        }
        for item in header.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let params: Vec<(String, String)> = parts
                .filter_map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                })
                .collect();
            let param = |k: &str| {
                params
                    .iter()
                    .find(|(pk, _)| pk == k)
                    .map(|(_, v)| v.as_str())
            };
            let json_like = matches!(media.as_str(), "application/json" | "*/*" | "application/*");
            let q = param("q")
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if is_openapi_v2_protobuf(&media) {
                openapi_pb_q = openapi_pb_q.max(q);
            } else if json_like && param("as").is_none() {
                json_q = json_q.max(q);
            }
            match (param("as"), param("g"), param("v")) {
                (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) if json_like => {
                    accept.table = true
                }
                (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some(v))
                    if json_like =>
                {
                    let better = match (&accept.aggregated_discovery, v) {
                        (None, "v2" | "v2beta1") => true,
                        (Some(cur), "v2") => cur != "v2",
                        _ => false,
                    };
                    if better {
                        accept.aggregated_discovery = Some(v.to_string());
                    }
                }
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                    Some("v1" | "v1beta1"),
                ) if json_like => accept.metadata = true,
                (None, _, _) if json_like || media == "application/yaml" => accept.json = true,
                _ => {}
            }
        }
        accept.openapi_v2_protobuf = openapi_pb_q > 0.0 && openapi_pb_q >= json_q;
        accept
    }

    /// Fails with 406 when nothing we can produce was offered.
    pub fn require_json(&self) -> Result<()> {
        if self.json || self.table || self.metadata {
            Ok(())
        } else {
            Err(ApiError::NotAcceptable)
        }
    }
}

/// An object as a `meta.k8s.io/v1` PartialObjectMetadata: its metadata alone.
pub(super) fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// The media type of a request body, without parameters.
pub(super) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON or YAML object body.
pub(super) fn decode_object(content_type: &str, body: &Bytes) -> Result<Value> {
    let value: Value = match media_type(content_type).as_str() {
        "" | "application/json" => crate::json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => crate::yaml::from_slice(body)
            .map_err(|e| {
                ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))
            })?,
        crate::protobuf::MEDIA_TYPE => {
            crate::protobuf::decode_body(body).map_err(|e| ApiError::BadRequest(e.to_string()))?
        }
        _ => return Err(ApiError::UnsupportedMediaType),
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_accept_asks_for_a_table() {
        let a = Accept::parse("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json");
        assert!(a.table && a.json);
    }

    #[test]
    fn aggregated_discovery_prefers_v2() {
        let a = Accept::parse("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json");
        assert_eq!(a.aggregated_discovery.as_deref(), Some("v2"));
    }

    #[test]
    fn metadata_only_requests_are_recognized_alone_or_after_protobuf() {
        let cases = [
            ("kube-rs list", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            ("kube-rs get", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
            ("controller-runtime", "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"),
        ];
        for (name, header) in cases {
            let a = Accept::parse(header);
            assert!(a.metadata && a.require_json().is_ok(), "{name}: {a:?}");
        }
    }

    #[test]
    fn openapi_v2_protobuf_is_chosen_by_quality() {
        let cases = [
            ("client-go alone", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", true),
            ("with a json fallback", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json;q=0.9", true),
            ("json preferred", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0.5, application/json", false),
            ("the spelling with a dot", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", true),
            ("refused with q=0", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf;q=0, */*", false),
            ("json alone", "application/json", false),
        ];
        for (name, header, want) in cases {
            assert_eq!(Accept::parse(header).openapi_v2_protobuf, want, "{name}");
        }
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        let a = Accept::parse("application/vnd.kubernetes.protobuf");
        assert_eq!(a.require_json().unwrap_err().code(), 406);
    }

    #[test]
    fn malformed_json_and_unknown_media_types_are_refused() {
        assert_eq!(
            decode_object("application/json", &Bytes::from_static(b"{"))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            decode_object(
                "application/vnd.kubernetes.protobuf",
                &Bytes::from_static(b"k8s")
            )
            .unwrap_err()
            .code(),
            400
        );
        assert_eq!(
            decode_object("application/cbor", &Bytes::from_static(b"k8s"))
                .unwrap_err()
                .code(),
            415
        );
        assert!(decode_object(
            "application/yaml",
            &Bytes::from_static(b"kind: ConfigMap\n")
        )
        .is_ok());
    }
}
