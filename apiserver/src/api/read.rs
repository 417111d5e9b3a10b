//! GET and LIST: consistent reads from storage, `resourceVersion=0` reads from the
//! watch cache, selectors, `limit`/`continue` pagination and Table output.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{bytes_response, json_response, Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Result};
use crate::storage::ListOptions;
use crate::table::{self, IncludeObject, TablePrinter};
use crate::watchcache::decode;

/// Label and field selectors of a request, parsed.
pub(super) struct Filter {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
}

impl Filter {
    pub(super) fn from_request(r: &Resource, req: &ApiRequest) -> Result<Filter> {
        let label = match req.query.value("labelSelector") {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?)
            }
            None => None,
        };
        let field = match req.query.value("fieldSelector") {
            Some(s) => Some(crate::conversion::selector_for_storage(
                r,
                FieldSelector::parse(s, &r.group, &r.plural)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
            )),
            None => None,
        };
        Ok(Filter { label, field })
    }

    pub(super) fn matches(&self, obj: &Value) -> bool {
        self.label
            .as_ref()
            .is_none_or(|l| l.matches(crate::object::labels(obj)))
            && self.field.as_ref().is_none_or(|f| f.matches(obj))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.label.is_none() && self.field.is_none()
    }
}

/// Serves the object in the version it was asked for: converted when `r` is a view of
/// another resource's store (`crate::conversion`) or its CRD has a conversion webhook,
/// otherwise with only its apiVersion rewritten (conversion strategy None).
/// `api` lets a conversion webhook's `service` be resolved; without it only `url` ones
/// are reachable.
pub(super) fn in_version(
    api: Option<&Arc<Api>>,
    r: &Resource,
    obj: &Value,
) -> Result<Option<Value>> {
    if let Some(converted) = crate::conversion::from_storage(r, obj) {
        return Ok(Some(converted));
    }
    if let Some(converted) = crate::conversion::webhook::in_version_blocking(api, r, obj) {
        return converted.map(|c| super::crd::default_on_read(r, &c).or(Some(c)));
    }
    let want = r.api_version();
    let converted =
        (obj.get("apiVersion").and_then(Value::as_str) != Some(want.as_str())).then(|| {
            let mut o = obj.clone();
            o["apiVersion"] = Value::String(want);
            o
        });
    Ok(
        match super::crd::default_on_read(r, converted.as_ref().unwrap_or(obj)) {
            Some(defaulted) => Some(defaulted),
            None => converted,
        },
    )
}

pub(super) fn object_response(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    code: StatusCode,
    obj: &Value,
) -> Result<Response<Body>> {
    let converted = in_version(Some(api), r, obj)?;
    let obj = converted.as_ref().unwrap_or(obj);
    if req.accept.table {
        let printer = TablePrinter::new(&r.group, &r.plural, r.printer_columns.as_ref());
        let rv = crate::object::meta_str(obj, "resourceVersion").unwrap_or("");
        let t = table::table(
            &printer,
            &[obj],
            include_object(req),
            true,
            rv,
            None,
            None,
            std::time::SystemTime::now(),
        );
        return Ok(json_response(code, &t));
    }
    req.accept.require_json()?;
    if req.accept.metadata {
        return Ok(json_response(
            code,
            &super::negotiate::partial_metadata(obj),
        ));
    }
    Ok(json_response(code, obj))
}

/// A list the server computes instead of reading it from storage (component statuses,
/// metrics.k8s.io): a Table of `items` when the client asks for one, else a
/// `list_kind` list in `api_version`.
pub(super) fn computed_list(
    req: &ApiRequest,
    printer: &TablePrinter,
    items: &[Value],
    list_kind: &str,
    api_version: &str,
) -> Result<Response<Body>> {
    if req.accept.table {
        let refs: Vec<&Value> = items.iter().collect();
        let t = table::table(
            printer,
            &refs,
            include_object(req),
            true,
            "",
            None,
            None,
            std::time::SystemTime::now(),
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    req.accept.require_json()?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": list_kind, "apiVersion": api_version, "metadata": {}, "items": items}),
    ))
}

pub(super) fn include_object(req: &ApiRequest) -> IncludeObject {
    req.query
        .get("includeObject")
        .and_then(IncludeObject::parse)
        .unwrap_or(IncludeObject::Metadata)
}

pub(super) async fn get(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
    name: &str,
) -> Result<Response<Body>> {
    // A client may watch from the resourceVersion it reads here: the watch cache must
    // already be following changes from this point on, or that watch would be 410 Gone.
    api.cache(r).await?;
    let obj = get_object(
        api,
        r,
        req.namespace(),
        name,
        req.query.get("resourceVersion") == Some("0"),
    )
    .await?;
    object_response(api, r, req, StatusCode::OK, &obj)
}

/// Reads one object (from the watch cache when `cached`), or 404.
pub(super) async fn get_object(
    api: &Api,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    cached: bool,
) -> Result<Value> {
    let key = r.key(ns, name);
    let not_found = || ApiError::NotFound(crate::status::Target::new(&r.group, &r.plural, name));
    if cached {
        let cache = api.cache(r).await?;
        return cache.get(&key).map(|o| (*o).clone()).ok_or_else(not_found);
    }
    let kv = api.storage.get(&key).await?.ok_or_else(not_found)?;
    // Nothing the server writes is unreadable (see `json`), but a record written by
    // something else may be: say which one.
    decode(&kv.value, kv.mod_revision).map_err(|e| match e {
        ApiError::Internal(m) => ApiError::Internal(format!("{m} (key {key})")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_metadata_only() {
        let cases = [
            (
                "metadata_first",
                r#"{"metadata":{"name":"a"},"spec":{}}"#,
                Some(12),
            ),
            (
                "nested_template_metadata_skipped",
                r#"{"spec":{"template":{"metadata":{}}},"metadata":{"name":"a"}}"#,
                Some(48),
            ),
            (
                "lookalike_in_a_string_skipped",
                r#"{"data":{"k":"\"metadata\":{"},"metadata":{}}"#,
                Some(42),
            ),
            ("no_metadata", r#"{"kind":"X"}"#, None),
        ];
        for (name, json, want) in cases {
            assert_eq!(metadata_open_brace(json.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn stored_items_get_their_resource_version_spliced_in() {
        let mut r = crate::registry::Registry::with_builtins()
            .unwrap()
            .snapshot()
            .get("", "v1", "configmaps")
            .unwrap()
            .as_ref()
            .clone();
        r.storage_version = r.version.clone();
        for (name, stored, want) in [
            (
                "with_fields",
                r#"{"metadata":{"name":"a"}}"#,
                r#"{"metadata":{"resourceVersion":"7","name":"a"}}"#,
            ),
            (
                "empty_metadata",
                r#"{"metadata":{}}"#,
                r#"{"metadata":{"resourceVersion":"7"}}"#,
            ),
        ] {
            let mut buf = Vec::new();
            Item::Stored {
                json: bytes::Bytes::from(stored),
                revision: 7,
            }
            .write_json(None, &r, &mut buf)
            .unwrap();
            assert_eq!(String::from_utf8(buf).unwrap(), want, "{name}");
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, key: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: key.to_string(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken> {
    let bad = || {
        ApiError::BadRequest(
            "continue key is not valid: the continue token could not be decoded".into(),
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.rv < 0 {
        return Err(ApiError::BadRequest(format!(
            "continue key is not valid: incorrect encoded start resourceVersion (version {})",
            t.v
        )));
    }
    Ok(t)
}

/// A resourceVersion from a query: a revision, never negative (upstream parses it as
/// an unsigned number).
pub(super) fn parse_resource_version(v: &str) -> Result<i64> {
    v.parse::<u64>()
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {v}")))
}

/// `resourceVersionMatch`, as upstream's ListOptions validation takes it.
pub(super) fn check_resource_version_match(q: &crate::request::Query) -> Result<()> {
    match q.value("resourceVersionMatch") {
        None | Some("Exact" | "NotOlderThan") => Ok(()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "resourceVersionMatch: Unsupported value: {}: supported values: \"Exact\", \"NotOlderThan\", \"\"",
            json!(other)
        ))),
    }
}

/// One listed object: parsed (from the cache, or because a selector needed it) or
/// still the stored JSON, which a plain LIST sends on with only its resourceVersion
/// added, without building a JSON tree.
pub(super) enum Item {
    Object(Arc<Value>),
    Stored { json: bytes::Bytes, revision: i64 },
}

impl Item {
    pub(super) fn object(&self) -> Result<Arc<Value>> {
        match self {
            Item::Object(o) => Ok(o.clone()),
            Item::Stored { json, revision } => decode(json, *revision).map(Arc::new),
        }
    }

    /// Appends the object as served at `r`'s version.
    fn write_json(&self, api: Option<&Arc<Api>>, r: &Resource, buf: &mut Vec<u8>) -> Result<()> {
        if let Item::Stored { json, revision } = self {
            if r.version == r.storage_version && r.group == r.storage_group && !r.defaults_on_read {
                if let Some(at) = metadata_open_brace(json) {
                    buf.extend_from_slice(&json[..=at]);
                    buf.extend_from_slice(format!("\"resourceVersion\":\"{revision}\"").as_bytes());
                    if json.get(at + 1) != Some(&b'}') {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(&json[at + 1..]);
                    return Ok(());
                }
            }
        }
        let obj = self.object()?;
        match in_version(api, r, &obj)? {
            Some(o) => serde_json::to_writer(&mut *buf, &o),
            None => serde_json::to_writer(&mut *buf, &*obj),
        }
        .map_err(internal)
    }
}

/// The index of the `{` that opens the top-level `"metadata"` object of compact JSON
/// (as stored), or None. Tracks strings and nesting so nested `metadata` keys (pod
/// templates) and look-alikes inside strings are skipped.
fn metadata_open_brace(json: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"metadata\":{";
    let mut depth = 0usize;
    for (i, b) in crate::json::structural(json) {
        match b {
            b'"' if depth == 1 && json[i..].starts_with(KEY) => return Some(i + KEY.len() - 1),
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The items of a list and where the next page starts.
pub(super) struct Page {
    pub items: Vec<Item>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

/// The page's objects as `r` serves them, when its CRD converts by webhook: all of
/// them in one ConversionReview, as upstream converts a list, then defaulted as reads
/// are.
async fn converted_by_webhook(
    api: &Arc<Api>,
    r: &Resource,
    items: &[Item],
) -> Result<Option<Vec<Value>>> {
    if r.conversion_webhook.is_none() {
        return Ok(None);
    }
    let objects = items.iter().map(Item::object).collect::<Result<Vec<_>>>()?;
    let Some(converted) = crate::conversion::webhook::list_in_version(api, r, &objects).await
    else {
        return Ok(None);
    };
    Ok(Some(
        (converted?.into_iter())
            .map(|c| super::crd::default_on_read(r, &c).unwrap_or(c))
            .collect(),
    ))
}

pub(super) async fn list(api: &Arc<Api>, r: &Resource, req: &ApiRequest) -> Result<Response<Body>> {
    let page = list_page(api, r, req).await?;
    let rv = page.revision.to_string();
    let by_webhook = match req.accept.metadata && !req.accept.table {
        true => None,
        false => converted_by_webhook(api, r, &page.items).await?,
    };
    if req.accept.table {
        let printer = TablePrinter::new(&r.group, &r.plural, r.printer_columns.as_ref());
        let converted: Vec<Value> = match by_webhook {
            Some(converted) => converted,
            None => (page.items.iter())
                .map(|i| {
                    let o = i.object()?;
                    in_version(Some(api), r, &o).map(|c| c.unwrap_or_else(|| (*o).clone()))
                })
                .collect::<Result<_>>()?,
        };
        let refs: Vec<&Value> = converted.iter().collect();
        let t = table::table(
            &printer,
            &refs,
            include_object(req),
            true,
            &rv,
            page.continue_token.as_deref(),
            None,
            std::time::SystemTime::now(),
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    req.accept.require_json()?;
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    if req.accept.metadata {
        let items = (page.items.iter())
            .map(|i| i.object().map(|o| super::negotiate::partial_metadata(&o)))
            .collect::<Result<Vec<_>>>()?;
        let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata, "items": items});
        return Ok(json_response(StatusCode::OK, &list));
    }
    let mut buf = Vec::with_capacity(256 + page.items.len() * 1024);
    buf.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut buf, &r.list_kind).map_err(internal)?;
    buf.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut buf, &r.api_version()).map_err(internal)?;
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, &metadata).map_err(internal)?;
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match &by_webhook {
            Some(converted) => serde_json::to_writer(&mut buf, &converted[i]).map_err(internal)?,
            None => item.write_json(Some(api), r, &mut buf)?,
        }
    }
    buf.extend_from_slice(b"]}");
    Ok(bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(buf),
    ))
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Resolves a LIST's resourceVersion semantics and reads one page.
pub(super) async fn list_page(api: &Arc<Api>, r: &Resource, req: &ApiRequest) -> Result<Page> {
    // Start the watch cache before reading, so a watch from this list's resourceVersion
    // (what every informer does next) finds its events there.
    api.cache(r).await?;
    let q = &req.query;
    let filter = Filter::from_request(r, req)?;
    let limit: usize = match q.value("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    check_resource_version_match(q)?;
    let rv = q.value("resourceVersion");
    let rv_match = q.value("resourceVersionMatch");
    let cont = q.value("continue");
    if cont.is_some() && rv.is_some_and(|v| v != "0") {
        return Err(ApiError::BadRequest(
            "specifying resource version is not allowed when using continue".into(),
        ));
    }
    if rv_match.is_some() && rv.is_none() {
        return Err(ApiError::BadRequest(
            "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
        ));
    }
    let parsed_rv = rv.map(parse_resource_version).transpose()?;
    let prefix = r.prefix_in(req.namespace());
    if let Some(token) = cont {
        let t = decode_continue(token)?;
        return storage_page(api, &prefix, &filter, limit, Some(t.rv), Some(t.start)).await;
    }
    match (parsed_rv, rv_match) {
        (Some(0), Some("Exact")) => Err(ApiError::BadRequest(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
        )),
        (Some(0), _) => Ok(cache_page(api, r, &prefix, &filter).await?),
        (Some(n), Some("NotOlderThan")) | (Some(n), None) if rv_match.is_some() || limit == 0 => {
            let cache = api.cache(r).await?;
            // The cache moves only with this resource's events: when it has not reached
            // `n` shortly, storage answers instead (a consistent read is never older).
            if cache.wait_for(n, Duration::from_millis(100)).await {
                let mut page = cache_page(api, r, &prefix, &filter).await?;
                page.revision = page.revision.max(n);
                return Ok(page);
            }
            wait_for_revision(api, n).await?;
            storage_page(api, &prefix, &filter, limit, None, None).await
        }
        (Some(n), _) => storage_page(api, &prefix, &filter, limit, Some(n), None).await,
        (None, _) => storage_page(api, &prefix, &filter, limit, None, None).await,
    }
}

/// How long a read or watch from a resourceVersion the store has not reached waits for
/// it before answering "Too large resource version" (upstream's watch cache: 3 s).
const FUTURE_REVISION_WAIT: Duration = Duration::from_secs(3);

/// Waits (up to [`FUTURE_REVISION_WAIT`]) until the store has reached `revision`.
pub(super) async fn wait_for_revision(api: &Api, revision: i64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + FUTURE_REVISION_WAIT;
    loop {
        let current = api.storage.current_revision().await?;
        if current >= revision {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::TooLargeResourceVersion {
                requested: revision,
                current,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cache_page(api: &Arc<Api>, r: &Resource, prefix: &str, filter: &Filter) -> Result<Page> {
    let cache = api.cache(r).await?;
    let (mut items, revision) = cache.list(prefix);
    if !filter.is_empty() {
        items.retain(|o| filter.matches(o));
    }
    Ok(Page {
        items: items.into_iter().map(Item::Object).collect(),
        revision,
        continue_token: None,
    })
}

/// Reads from storage until `limit` objects passed the filter (all when 0).
async fn storage_page(
    api: &Api,
    prefix: &str,
    filter: &Filter,
    limit: usize,
    revision: Option<i64>,
    start_after: Option<String>,
) -> Result<Page> {
    let mut items = Vec::new();
    let mut opts = ListOptions {
        start_after,
        limit: if limit == 0 { 0 } else { limit.max(50) },
        revision,
    };
    loop {
        let page = api.storage.list(prefix, opts.clone()).await?;
        opts.revision = Some(page.revision);
        let mut last_key = None;
        for kv in &page.kvs {
            last_key = Some(kv.key.clone());
            let item = if filter.is_empty() {
                Some(Item::Stored {
                    json: kv.value.clone(),
                    revision: kv.mod_revision,
                })
            } else {
                let obj = decode(&kv.value, kv.mod_revision)?;
                filter.matches(&obj).then(|| Item::Object(Arc::new(obj)))
            };
            if let Some(item) = item {
                items.push(item);
                if limit > 0 && items.len() == limit {
                    let more = page.more
                        || kv.key != page.kvs.last().map(|k| k.key.clone()).unwrap_or_default();
                    let continue_token = more.then(|| encode_continue(page.revision, &kv.key));
                    return Ok(Page {
                        items,
                        revision: page.revision,
                        continue_token,
                    });
                }
            }
        }
        if !page.more || last_key.is_none() {
            return Ok(Page {
                items,
                revision: page.revision,
                continue_token: None,
            });
        }
        opts.start_after = last_key;
    }
}
