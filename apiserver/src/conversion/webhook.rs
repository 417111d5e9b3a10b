//! CRD conversion webhooks (strategy Webhook): a ConversionReview v1 asks the CRD's
//! webhook for the objects in another version, checked as apiextensions checks the
//! answer (same uid, Success, one object per object sent, the desired apiVersion and
//! the same kind; only labels and annotations of metadata may change). Writes convert
//! to the storage version before storing; reads in another version convert on the way
//! out: a LIST's page in one review ([`list_in_version`]), GET, WATCH events and the
//! answers to writes one object at a time, as upstream ([`in_version_blocking`], since
//! those paths are synchronous). `url` and `service`
//! client configs both work everywhere; a failed conversion is upstream's 500.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use crate::api::pipeline::webhook::client;
use crate::api::Api;
use crate::registry::Resource;
use crate::status::{ApiError, Result};

/// What apiextensions waits for a conversion webhook.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `example.com/v1, Kind=Widget`, as upstream names a conversion target in errors.
fn named(r: &Resource, api_version: &str) -> String {
    format!("{api_version}, Kind={}", r.kind)
}

/// `objs` (of `r`'s kind, any versions) in `desired` apiVersion, by `r`'s webhook.
pub async fn convert(
    api: Option<&Api>,
    r: &Resource,
    objs: Vec<Value>,
    desired: &str,
) -> Result<Vec<Value>> {
    let Some(hook) = r.conversion_webhook.as_deref() else {
        return Ok(objs);
    };
    // Upstream names the objects' own version (`example.com/v1, Kind=Widget`).
    let from = objs
        .first()
        .and_then(|o| o.get("apiVersion"))
        .and_then(Value::as_str)
        .unwrap_or(desired)
        .to_string();
    let failed = |why: String| {
        ApiError::Internal(format!(
            "conversion webhook for {} failed: {why}",
            named(r, &from)
        ))
    };
    let versions: Vec<&str> = hook
        .get("conversionReviewVersions")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !versions.contains(&"v1") {
        return Err(failed(format!(
            "none of the conversionReviewVersions {versions:?} is supported (v1 is)"
        )));
    }
    let uid = crate::object::new_uid();
    let review = json!({
        "kind": "ConversionReview",
        "apiVersion": "apiextensions.k8s.io/v1",
        "request": {"uid": uid, "desiredAPIVersion": desired, "objects": objs},
    });
    let client_config = hook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let body = client::post(api, &client_config, crate::json::to_vec(&review), TIMEOUT)
        .await
        .map_err(&failed)?;
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("the response is not JSON: {e}")))?;
    check_answer(&answer, &uid, &objs, desired, &r.kind).map_err(failed)
}

/// The converted objects of a ConversionReview answer, or why it is not acceptable.
fn check_answer(
    answer: &Value,
    uid: &str,
    sent: &[Value],
    desired: &str,
    kind: &str,
) -> std::result::Result<Vec<Value>, String> {
    let Some(response) = answer.get("response").filter(|r| r.is_object()) else {
        return Err("no response provided".into());
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let status = response
        .pointer("/result/status")
        .and_then(Value::as_str)
        .unwrap_or("");
    if status != "Success" {
        // The webhook's own message, as upstream passes it on.
        return match response.pointer("/result/message").and_then(Value::as_str) {
            Some(message) if !message.is_empty() => Err(message.to_string()),
            _ => Err(format!(
                "response.result.status was '{status}', not 'Success'"
            )),
        };
    }
    let converted = response
        .get("convertedObjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if converted.len() != sent.len() {
        return Err(format!(
            "expected {} converted objects, got {}",
            sent.len(),
            converted.len()
        ));
    }
    converted
        .into_iter()
        .zip(sent)
        .map(|(mut out, original)| {
            let av = out.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if av != desired {
                return Err(format!(
                    "invalid converted object: expected apiVersion {desired:?}, got {av:?}"
                ));
            }
            let k = out.get("kind").and_then(Value::as_str).unwrap_or("");
            if k != kind {
                return Err(format!(
                    "invalid converted object: expected kind {kind:?}, got {k:?}"
                ));
            }
            // Only labels and annotations are the webhook's to change.
            let mut meta = original.get("metadata").cloned().unwrap_or(json!({}));
            for field in ["labels", "annotations"] {
                match out.pointer(&format!("/metadata/{field}")) {
                    Some(v) => meta[field] = v.clone(),
                    None => {
                        if let Some(m) = meta.as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            out["metadata"] = meta;
            Ok(out)
        })
        .collect()
}

/// The stored form of `obj` written through `r` (the storage version), when `r`'s CRD
/// converts by webhook and `r` is not the storage version.
pub async fn to_storage(api: &Api, r: &Resource, obj: &Value) -> Result<Option<Value>> {
    if r.conversion_webhook.is_none() || r.version == r.storage_version {
        return Ok(None);
    }
    let desired = format!("{}/{}", r.group, r.storage_version);
    let mut out = convert(Some(api), r, vec![obj.clone()], &desired).await?;
    Ok(out.pop())
}

/// `obj` as `r` serves it, when `r`'s CRD converts by webhook and `obj` is in another
/// version; the call runs on the conversion runtime while this thread waits (the read
/// paths are synchronous). A `service` webhook is resolved through `api`'s endpoint
/// caches; without `api` only `url` webhooks are reachable.
pub fn in_version_blocking(
    api: Option<&Arc<Api>>,
    r: &Resource,
    obj: &Value,
) -> Option<Result<Value>> {
    r.conversion_webhook.as_ref()?;
    let want = r.api_version();
    if obj.get("apiVersion").and_then(Value::as_str) == Some(want.as_str())
        || obj.get("kind").and_then(Value::as_str) != Some(r.kind.as_str())
    {
        return None;
    }
    let (api, r, obj) = (api.cloned(), r.clone(), obj.clone());
    let call = async move {
        convert(api.as_deref(), &r, vec![obj], &want)
            .await
            .map(|mut v| v.pop().unwrap_or_default())
            .map_err(read_error)
    };
    Some(block_on(call))
}

/// `objs` as `r` serves them, when `r`'s CRD converts by webhook (None otherwise): the
/// ones in another version go to the webhook together in one ConversionReview, as
/// upstream converts a list, and the others are served as they are. A failed
/// conversion fails them all, with a read's 500.
pub async fn list_in_version(
    api: &Api,
    r: &Resource,
    objs: &[Arc<Value>],
) -> Option<Result<Vec<Value>>> {
    r.conversion_webhook.as_ref()?;
    let want = r.api_version();
    let needs = |o: &Value| {
        o.get("apiVersion").and_then(Value::as_str) != Some(want.as_str())
            && o.get("kind").and_then(Value::as_str) == Some(r.kind.as_str())
    };
    let sent: Vec<Value> = (objs.iter())
        .filter(|o| needs(o))
        .map(|o| (**o).clone())
        .collect();
    let mut converted = Vec::new().into_iter();
    if !sent.is_empty() {
        match convert(Some(api), r, sent, &want).await {
            // `check_answer` saw one converted object per object sent.
            Ok(out) => converted = out.into_iter(),
            Err(e) => return Some(Err(read_error(e))),
        }
    }
    Some(Ok(objs
        .iter()
        .map(|o| match needs(o) {
            true => converted.next().unwrap_or_default(),
            false => (**o).clone(),
        })
        .collect()))
}

/// A failed conversion on a read is, as upstream serves any plain error there, a 500
/// with no reason and the conversion's message alone (writes keep InternalError's).
fn read_error(e: ApiError) -> ApiError {
    match e {
        ApiError::Internal(message) => ApiError::Status {
            code: 500,
            reason: "",
            message,
            details: None,
        },
        other => other,
    }
}

/// Runs `fut` on a runtime of its own and waits for it, letting the current runtime
/// (when it has other workers) move its tasks elsewhere meanwhile.
fn block_on<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("conversion-webhooks")
            .enable_all()
            .build()
            .expect("building the conversion webhook runtime")
    });
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let wait = move || rx.recv().expect("the conversion task answers");
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_checked_and_keeps_all_metadata_but_labels_and_annotations() {
        let sent = vec![json!({"apiVersion": "example.com/v1", "kind": "W",
            "metadata": {"name": "a", "uid": "1", "labels": {"x": "1"}}, "spec": {"a": 1}})];
        let ok = json!({"response": {"uid": "u", "result": {"status": "Success"}, "convertedObjects": [
            {"apiVersion": "example.com/v2", "kind": "W",
             "metadata": {"name": "changed", "labels": {"y": "2"}}, "spec": {"b": 1}}
        ]}});
        let out = check_answer(&ok, "u", &sent, "example.com/v2", "W").unwrap();
        assert_eq!(
            out[0]["metadata"],
            json!({"name": "a", "uid": "1", "labels": {"y": "2"}})
        );
        assert_eq!(out[0]["spec"], json!({"b": 1}));

        let cases = [
            ("another uid", json!({"response": {"uid": "x"}}), "expected response.uid=\"u\", got \"x\""),
            ("failure", json!({"response": {"uid": "u", "result": {"status": "Failure", "message": "nope"}}}), "nope"),
            ("failure without a message", json!({"response": {"uid": "u", "result": {"status": "Failure"}}}), "response.result.status was 'Failure', not 'Success'"),
            ("too few", json!({"response": {"uid": "u", "result": {"status": "Success"}, "convertedObjects": []}}), "expected 1 converted objects, got 0"),
            ("wrong version", json!({"response": {"uid": "u", "result": {"status": "Success"}, "convertedObjects": [{"apiVersion": "example.com/v1", "kind": "W"}]}}), "invalid converted object: expected apiVersion \"example.com/v2\", got \"example.com/v1\""),
        ];
        for (name, answer, want) in cases {
            assert_eq!(
                check_answer(&answer, "u", &sent, "example.com/v2", "W").unwrap_err(),
                want,
                "{name}"
            );
        }
    }
}
