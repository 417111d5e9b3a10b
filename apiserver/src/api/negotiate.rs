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
}

impl Accept {
    pub fn parse(header: &str) -> Accept {
        let mut accept = Accept::default();
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
