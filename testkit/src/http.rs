//! Reading HTTP/1.1 requests off a kept-alive connection, for the test servers that
//! stand in for webhooks and nodes' agents: a head up to the blank line and a
//! Content-Length body (no chunked bodies).

use tokio::io::{AsyncRead, AsyncReadExt};

/// One request read off a connection.
pub struct Request {
    /// The request line and headers, without the blank line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The request target's path, without the query.
    pub fn path(&self) -> &str {
        let target = self.head.split_whitespace().nth(1).unwrap_or("/");
        target.split('?').next().unwrap_or("/")
    }

    /// The value of the header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// The next request on `stream`, whose bytes read so far past the last request are in
/// `buf`; `None` once the client closes the connection (or it fails).
pub async fn next_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<Request> {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    let length = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    request.body = buf[head_end..head_end + length].to_vec();
    buf.drain(..head_end + length);
    Some(request)
}
