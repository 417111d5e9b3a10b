//! `serve` over an in-memory pipe with a handler that panics on some paths: what a
//! client sees when the server has a bug.

use std::convert::Infallible;
use std::task::Poll;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use super::*;
use crate::api::json_response;

async fn handler(req: Request<Incoming>) -> Response<Body> {
    match req.uri().path() {
        "/panic" => panic!("a bug in a handler"),
        "/panic-in-body" => {
            let frames =
                futures::stream::poll_fn(|_| -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                    panic!("a bug while streaming a response")
                });
            Response::new(StreamBody::new(frames).boxed())
        }
        _ => json_response(StatusCode::OK, &json!({"served": req.uri().path()})),
    }
}

/// A client end, and the task serving the other end.
fn pipe() -> (
    TokioIo<tokio::io::DuplexStream>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = "127.0.0.1:1".parse().unwrap();
    let served = tokio::spawn(serve(
        server,
        false,
        ConnectionTimeouts::default(),
        peer,
        handler,
    ));
    (TokioIo::new(client), served)
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

async fn json(resp: Response<Incoming>) -> Value {
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("reading the response body")
        .to_bytes();
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

#[tokio::test]
async fn a_panicking_handler_answers_500_with_a_status_and_the_connection_serves_the_next_request()
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(pipe().0)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);

    let resp = sender
        .send_request(get("/panic"))
        .await
        .expect("a response, not a dropped connection");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let status = json(resp).await;
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "InternalError", "{status}");
    assert_eq!(status["code"], 500, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("This request caused apiserver to panic"),
        "{status}"
    );

    // The same HTTP/1.1 connection (one sender is one connection) goes on serving.
    sender.ready().await.expect("the connection is still open");
    let resp = sender.send_request(get("/after")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["served"], "/after");
    assert!(!conn.is_finished(), "the connection stays open");
}

#[tokio::test]
async fn a_panic_while_streaming_an_http1_response_aborts_it_and_the_connection_ends_cleanly() {
    let (io, served) = pipe();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    // The head may be out before the body fails: HTTP/1.1 can then only close.
    let broken = match sender.send_request(get("/panic-in-body")).await {
        Ok(resp) => resp.into_body().collect().await.map(drop),
        Err(e) => Err(e),
    };
    assert!(
        broken.is_err(),
        "the broken response ends with an error, not a truncated success"
    );
    let ended = served.await;
    assert!(
        ended.is_ok(),
        "the connection task ends without unwinding: {ended:?}"
    );
}

#[tokio::test]
async fn a_panic_while_streaming_an_http2_response_resets_only_that_stream() {
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), pipe().0)
        .await
        .unwrap();
    tokio::spawn(conn);

    // The stream is reset: before the response head (as here) or after part of the body.
    let broken = match sender
        .send_request(get("http://localhost/panic-in-body"))
        .await
    {
        Ok(resp) => resp.into_body().collect().await.map(drop),
        Err(e) => Err(e),
    };
    assert!(
        broken.is_err(),
        "the broken stream ends with an error, not a truncated success"
    );

    let resp = sender
        .send_request(get("http://localhost/after"))
        .await
        .expect("other streams are still served");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json(resp).await["served"], "/after");
}
