//! WATCH: a stream of `{"type", "object"}` events from the watch cache, filtered by
//! namespace and selectors (objects moving into or out of a selector are reported as
//! ADDED or DELETED, as upstream does), with bookmarks, `sendInitialEvents`,
//! `timeoutSeconds` and Table rows when asked.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::read::{
    check_resource_version_match, in_version, include_object, parse_resource_version,
    wait_for_revision, Filter,
};
use super::{Api, ApiRequest, Body};
use crate::registry::Resource;
use crate::status::{ApiError, Result};
use crate::table::{self, IncludeObject, TablePrinter};
use crate::watchcache::{CacheEvent, EventType};

/// How long a watch waits for the cache to catch up with a revision.
const CATCH_UP: Duration = Duration::from_millis(100);

/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

struct Encoder {
    /// For conversion webhooks reached through a `service`.
    api: Arc<Api>,
    resource: Resource,
    filter: Filter,
    prefix: String,
    printer: Option<TablePrinter>,
    include: IncludeObject,
    sent_columns: bool,
    /// Objects as PartialObjectMetadata (a metadata-only watch).
    metadata: bool,
}

impl Encoder {
    fn frame(&mut self, kind: &str, obj: &Value, precomputed: Option<&Bytes>) -> Bytes {
        // An object its conversion webhook cannot convert is reported as an ERROR event.
        let converted = match in_version(Some(&self.api), &self.resource, obj) {
            Ok(c) => c,
            Err(e) => return error_frame(&e),
        };
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(b"{\"type\":\"");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\",\"object\":");
        let obj = converted.as_ref().unwrap_or(obj);
        match (&self.printer, precomputed) {
            (Some(printer), _) => {
                let rv = crate::object::meta_str(obj, "resourceVersion").unwrap_or("");
                let t = table::table(
                    printer,
                    &[obj],
                    self.include,
                    !self.sent_columns,
                    rv,
                    None,
                    None,
                    std::time::SystemTime::now(),
                );
                self.sent_columns = true;
                out.put_slice(&crate::json::to_vec(&t));
            }
            (None, _) if self.metadata => out.put_slice(
                &serde_json::to_vec(&super::negotiate::partial_metadata(obj)).unwrap_or_default(),
            ),
            (None, Some(json)) if converted.is_none() => out.put_slice(json),
            (None, _) => out.put_slice(&crate::json::to_vec(obj)),
        }
        out.put_slice(b"}\n");
        out.freeze()
    }

    /// The frame a cache event becomes for this watcher, if any.
    fn event(&mut self, ev: &CacheEvent) -> Option<Bytes> {
        if !ev.key.starts_with(&self.prefix) {
            return None;
        }
        let now = self.filter.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let kind = match ev.kind {
            EventType::Added if now => "ADDED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            EventType::Deleted if now => "DELETED",
            _ => return None,
        };
        Some(self.frame(kind, &ev.object, Some(ev.object_json())))
    }

    fn bookmark(&self, revision: i64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = if self.metadata {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (self.resource.kind.clone(), self.resource.api_version())
        };
        let obj = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
        Bytes::from(format!("{{\"type\":\"BOOKMARK\",\"object\":{obj}}}\n"))
    }
}

fn error_frame(e: &ApiError) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"ERROR\",\"object\":{}}}\n",
        e.to_status()
    ))
}

pub(super) async fn serve(
    api: &Arc<Api>,
    r: &Resource,
    req: &ApiRequest,
) -> Result<Response<Body>> {
    req.accept.require_json()?;
    let q = &req.query;
    let filter = Filter::from_request(r, req)?;
    let bookmarks = q.flag("allowWatchBookmarks");
    check_resource_version_match(q)?;
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    if send_initial.is_none() && q.value("resourceVersionMatch").is_some() {
        return Err(ApiError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
        ));
    }
    if send_initial == Some(true) && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::BadRequest(
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan".into(),
        ));
    }
    let rv = q
        .value("resourceVersion")
        .map(parse_resource_version)
        .transpose()?;
    let timeout = match q.value("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        // Upstream spreads watch lifetimes between 30 and 60 minutes.
        None => Duration::from_secs(1800 + fastrand::u64(..1800)),
    };
    let cache = api.cache(r).await?;
    // A watch from a revision the store has not reached would skip every event up to
    // it: wait briefly for the store, then refuse, as upstream's watch cache does.
    if let Some(n) = rv.filter(|n| *n > cache.revision()) {
        wait_for_revision(api, n).await?;
    }
    // With no resourceVersion, or with sendInitialEvents, the stream starts with the
    // current state. The cache's revision moves only with its own resource's events,
    // so it may never reach a newer global revision: wait briefly for writes in
    // flight, then start; anything written since arrives as a live event.
    let initial = send_initial.unwrap_or(matches!(rv, None | Some(0)));
    if initial {
        let wanted = match rv {
            Some(n) if n > 0 => n,
            _ if rv.is_none() => api.storage.current_revision().await?,
            _ => 0,
        };
        cache.wait_for(wanted, CATCH_UP).await;
    }
    let after = if initial { None } else { Some(rv.unwrap_or(0)) };
    let mut enc = Encoder {
        api: api.clone(),
        resource: r.clone(),
        filter,
        prefix: r.prefix_in(req.namespace()),
        printer: req
            .accept
            .table
            .then(|| TablePrinter::new(&r.group, &r.plural, r.printer_columns.as_ref())),
        include: include_object(req),
        sent_columns: false,
        metadata: req.accept.metadata && !req.accept.table,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    match cache.subscribe(&enc.prefix.clone(), after) {
        Err(e) => {
            // Upstream reports a too-old resourceVersion as an ERROR event on the stream.
            let _ = tx.try_send(error_frame(&e));
        }
        Ok(sub) => {
            tokio::spawn(async move {
                let mut last = sub.revision;
                for obj in &sub.initial {
                    if enc.filter.matches(obj) {
                        let frame = enc.frame("ADDED", obj, None);
                        if tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
                if send_initial == Some(true)
                    && bookmarks
                    && tx.send(enc.bookmark(last, true)).await.is_err()
                {
                    return;
                }
                for ev in &sub.backlog {
                    last = last.max(ev.revision);
                    if let Some(f) = enc.event(ev) {
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                }
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let mut live = sub.live;
                let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = &mut deadline => return,
                        _ = ticker.tick(), if bookmarks => {
                            if tx.send(enc.bookmark(last, false)).await.is_err() {
                                return;
                            }
                        }
                        ev = live.recv() => match ev {
                            Ok(ev) if ev.revision <= last => {}
                            Ok(ev) => {
                                last = ev.revision;
                                if let Some(f) = enc.event(&ev) {
                                    if tx.send(f).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            // Too slow to keep up, or the cache restarted: end the watch so
                            // the client resumes from the last resourceVersion it saw.
                            Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                        },
                    }
                }
            });
        }
    }
    let stream = ReceiverStream::new(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    let body = StreamBody::new(stream).boxed();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(body)
        .expect("static response parts are valid"))
}
