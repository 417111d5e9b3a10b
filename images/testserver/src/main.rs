//! kybern's test server: the program inside the project's own test image. A std-only HTTP/1.1
//! server (one thread per connection, `Connection: close`) whose endpoints let end-to-end tests
//! see what a container sees and steer it:
//!
//! - `GET /hostname`: the container's hostname
//! - `GET /remote`: the client's address as this server saw it (`ip:port`), which shows
//!   whether a service proxy kept or masqueraded the source
//! - `GET /local`: the address the connection arrived at (`ip:port`), after any DNAT
//! - `GET|POST /echo?msg=...`: the request body, or `msg` when there is no body
//! - `GET /headers`: the request headers, one `name: value` per line
//! - `GET /exit?code=N`: answers, then exits the process with status N
//! - `GET /file?path=P`: the contents of file P (404 when it cannot be read)
//! - `GET /ready`: 200 while ready, 503 otherwise; `GET /ready/toggle` flips it
//!
//! It listens on `0.0.0.0:$PORT` (default 8080); `READY=false` starts it unready.
//!
//! Client mode, for tests that need an HTTP client inside a network namespace where nothing
//! else is installed: `testserver get HOST:PORT /path` prints the body to stdout and exits 0
//! for a 2xx answer, 1 otherwise.
//!
//! Echo mode, for port-forward tests and `kybern bench io`: `testserver echo PORT` sends
//! every TCP connection's bytes back as they come (64 KiB reads, so the echo itself is not
//! what a throughput figure measures), and half-closes once the client has.
//!
//! UDP: `testserver udp-echo PORT` sends every datagram back to its sender unchanged (also
//! run beside the HTTP server when `UDP_PORT` is set); `testserver udp HOST:PORT MSG` sends
//! one datagram and prints the answer (exit 1 on an ICMP error or no answer within 5 s).
//!
//! Names: `testserver resolve NAME` looks NAME up as any program in the container does
//! (std's `ToSocketAddrs`, i.e. the C library with the pod's resolv.conf, search list and
//! ndots) and prints each address on a line; exit 1 when it does not resolve.
//!
//! Polling, for `kybern bench services`: `testserver until HOST:PORT TEXT` prints `polling`,
//! then GETs `/local` there on a new connection every millisecond (20 ms connect and read
//! limits) until the body contains TEXT, and prints `seen <unix time in ns>`; exit 1 after
//! 30 s without it.
//!
//! DNS: `testserver fake-dns PORT NAME=IPV4...` is a fake upstream resolver (UDP) that
//! knows only the names given and prints every question it gets.
//!
//! TLS: `testserver tls-hello HOST:PORT` sends a TLS ClientHello and prints `handshake 3.3`
//! when a TLS server answers (exit 0), so a pod can show it reaches the API server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod dns;
mod tls;
mod udp;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("get") {
        let (Some(addr), Some(path)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: testserver get HOST:PORT /path");
            std::process::exit(2);
        };
        std::process::exit(client_get(addr, path));
    }
    if args.get(1).map(String::as_str) == Some("echo") {
        let Some(port) = args.get(2) else {
            eprintln!("usage: testserver echo PORT");
            std::process::exit(2);
        };
        std::process::exit(echo_server(port));
    }
    match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("udp-echo"), Some(port), _) => std::process::exit(udp::echo_server(port)),
        (Some("udp"), Some(addr), Some(msg)) => std::process::exit(udp::send(addr, msg)),
        (Some("resolve"), Some(name), _) => std::process::exit(resolve(name)),
        (Some("tls-hello"), Some(addr), _) => std::process::exit(tls::hello(addr)),
        (Some("until"), Some(addr), Some(text)) => std::process::exit(until(addr, text)),
        (Some("fake-dns"), Some(port), _) => {
            std::process::exit(dns::fake_upstream(port, &args[3..]))
        }
        (Some(mode @ ("udp-echo" | "udp" | "resolve" | "tls-hello" | "until")), _, _) => {
            eprintln!("usage: testserver udp-echo PORT | udp HOST:PORT MSG | resolve NAME | tls-hello HOST:PORT | until HOST:PORT TEXT ({mode})");
            std::process::exit(2);
        }
        _ => {}
    }
    if let Ok(port) = std::env::var("UDP_PORT") {
        std::thread::spawn(move || udp::echo_server(&port));
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let ready = Arc::new(AtomicBool::new(
        std::env::var("READY").as_deref() != Ok("false"),
    ));
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testserver: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("testserver listening on 0.0.0.0:{port}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let ready = ready.clone();
        std::thread::spawn(move || {
            if let Err(e) = serve(stream, &ready) {
                eprintln!("testserver: connection: {e}");
            }
        });
    }
}

/// The two ends of a connection, as the accepted socket reports them.
#[derive(Default)]
struct Conn {
    peer: String,
    local: String,
}

impl Conn {
    fn of(stream: &TcpStream) -> Conn {
        let show = |a: std::io::Result<std::net::SocketAddr>| {
            a.map(|a| a.to_string())
                .unwrap_or_else(|e| format!("unknown: {e}"))
        };
        Conn {
            peer: show(stream.peer_addr()),
            local: show(stream.local_addr()),
        }
    }
}

/// What a handler answers: status code, body, and whether to exit afterwards.
struct Reply {
    status: u16,
    body: Vec<u8>,
    exit_with: Option<i32>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            body: body.into(),
            exit_with: None,
        }
    }
}

fn serve(stream: TcpStream, ready: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (_method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            }
            headers.push((name.to_string(), value));
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let reply = route(path, query, &headers, body, ready, &Conn::of(&stream));
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    )?;
    out.write_all(&reply.body)?;
    out.flush()?;
    if let Some(code) = reply.exit_with {
        std::process::exit(code);
    }
    Ok(())
}

fn route(
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    ready: &AtomicBool,
    conn: &Conn,
) -> Reply {
    match path {
        "/" => Reply::new(
            200,
            "kybern testserver: /hostname /remote /local /echo /headers /exit /file /ready /ready/toggle\n",
        ),
        "/hostname" => Reply::new(200, hostname()),
        "/remote" => Reply::new(200, format!("{}\n", conn.peer)),
        "/local" => Reply::new(200, format!("{}\n", conn.local)),
        "/echo" if !body.is_empty() => Reply::new(200, body),
        "/echo" => Reply::new(200, query_param(query, "msg").unwrap_or_default()),
        "/headers" => {
            let text: String = headers
                .iter()
                .map(|(n, v)| format!("{}: {v}\n", n.to_ascii_lowercase()))
                .collect();
            Reply::new(200, text)
        }
        "/exit" => match query_param(query, "code").map(|c| c.parse::<i32>()) {
            Some(Ok(code)) => Reply {
                exit_with: Some(code),
                ..Reply::new(200, format!("exiting with {code}\n"))
            },
            _ => Reply::new(400, "need ?code=N\n"),
        },
        "/file" => match query_param(query, "path").map(std::fs::read) {
            Some(Ok(content)) => Reply::new(200, content),
            Some(Err(e)) => Reply::new(404, format!("{e}\n")),
            None => Reply::new(400, "need ?path=P\n"),
        },
        "/ready" if ready.load(Ordering::SeqCst) => Reply::new(200, "ready\n"),
        "/ready" => Reply::new(503, "not ready\n"),
        "/ready/toggle" => {
            let now = !ready.fetch_xor(true, Ordering::SeqCst);
            Reply::new(200, if now { "ready\n" } else { "not ready\n" })
        }
        _ => Reply::new(404, "not found\n"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The percent-decoded value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `testserver resolve NAME`: the addresses NAME resolves to, one a line, exit 0; exit 1
/// with the C library's error when it does not resolve.
fn resolve(name: &str) -> i32 {
    use std::net::ToSocketAddrs;
    match (name, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let mut seen = Vec::new();
            for addr in addrs {
                if !seen.contains(&addr.ip()) {
                    seen.push(addr.ip());
                    println!("{}", addr.ip());
                }
            }
            0
        }
        Err(e) => {
            eprintln!("testserver resolve {name}: {e}");
            1
        }
    }
}

/// `testserver until HOST:PORT TEXT` (see the module's documentation).
fn until(addr: &str, text: &str) -> i32 {
    let Ok(Some(target)) = std::net::ToSocketAddrs::to_socket_addrs(addr).map(|mut a| a.next())
    else {
        eprintln!("testserver until: {addr} is not an address");
        return 2;
    };
    println!("polling");
    let _ = std::io::stdout().flush();
    let limit = Duration::from_millis(20);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let body = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&target, limit)?;
            stream.set_read_timeout(Some(limit))?;
            write!(
                stream,
                "GET /local HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        if body.is_ok_and(|b| b.contains(text)) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            println!("seen {}", now.as_nanos());
            return 0;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("testserver until: {addr} never answered with {text:?}");
    1
}

/// `testserver echo PORT`: echoes every connection on its own thread; returns only when it
/// cannot listen.
fn echo_server(port: &str) -> i32 {
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testserver: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    println!("testserver echoing on 0.0.0.0:{port}");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = echo(stream) {
                eprintln!("testserver: echo: {e}");
            }
        });
    }
    0
}

/// Writes back what `stream` reads until it ends, then shuts the write side.
fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return stream.shutdown(std::net::Shutdown::Write);
        }
        stream.write_all(&buf[..n])?;
    }
}

/// `testserver get HOST:PORT /path`: one GET, body to stdout, exit 0 on 2xx.
fn client_get(addr: &str, path: &str) -> i32 {
    let result = (|| -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kybern-testserver\r\nConnection: close\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, response[(split + 4).min(response.len())..].to_vec()))
    })();
    match result {
        Ok((status, body)) => {
            // A closed stdout (caller gone) is not this program's failure to report.
            let _ = std::io::stdout().write_all(&body);
            if (200..300).contains(&status) {
                0
            } else {
                eprintln!("testserver get: status {status}");
                1
            }
        }
        Err(e) => {
            eprintln!("testserver get {addr}{path}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let cases = [
            ("plain", "code=3", "code", Some("3")),
            (
                "slash escaped",
                "path=%2Fetc%2Fhostname",
                "path",
                Some("/etc/hostname"),
            ),
            ("plus is space", "msg=a+b", "msg", Some("a b")),
            ("second key", "a=1&msg=hi", "msg", Some("hi")),
            ("missing", "a=1", "msg", None),
            ("truncated escape kept", "msg=50%", "msg", Some("50%")),
        ];
        for (name, query, key, want) in cases {
            assert_eq!(query_param(query, key).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn ready_endpoint_follows_the_toggle() {
        let ready = AtomicBool::new(true);
        assert_eq!(
            route("/ready", "", &[], vec![], &ready, &Conn::default()).status,
            200
        );
        assert_eq!(
            route("/ready/toggle", "", &[], vec![], &ready, &Conn::default()).status,
            200
        );
        assert_eq!(
            route("/ready", "", &[], vec![], &ready, &Conn::default()).status,
            503
        );
        route("/ready/toggle", "", &[], vec![], &ready, &Conn::default());
        assert_eq!(
            route("/ready", "", &[], vec![], &ready, &Conn::default()).status,
            200
        );
    }

    #[test]
    fn echo_sends_back_everything_and_then_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || echo(listener.accept().unwrap().0));
        let mut client = TcpStream::connect(addr).unwrap();
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (mut w, sent) = (client.try_clone().unwrap(), sent.clone());
            std::thread::spawn(move || {
                w.write_all(&sent).unwrap();
                w.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        server.join().unwrap().unwrap();
        assert!(
            back == sent,
            "echoed {} bytes of {}",
            back.len(),
            sent.len()
        );
    }

    #[test]
    fn remote_and_local_name_the_two_ends_of_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                serve(stream, &AtomicBool::new(true)).unwrap();
            }
        });
        let get = |path: &str| {
            let mut client = TcpStream::connect(server_addr).unwrap();
            let me = client.local_addr().unwrap();
            write!(client, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            client.read_to_string(&mut response).unwrap();
            let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            (me.to_string(), body.to_string())
        };
        let (me, remote) = get("/remote");
        assert_eq!(remote, me, "/remote is the client's address and port");
        let (_, local) = get("/local");
        assert_eq!(
            local,
            server_addr.to_string(),
            "/local is the address dialled"
        );
        server.join().unwrap();
    }

    #[test]
    fn until_returns_once_local_names_the_awaited_address() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let _ = serve(stream, &AtomicBool::new(true));
            }
        });
        assert_eq!(until(&addr.to_string(), &addr.to_string()), 0);
    }

    #[test]
    fn resolve_prints_each_address_once() {
        // Names that never leave the machine: a literal address and /etc/hosts' localhost.
        assert_eq!(resolve("192.0.2.7"), 0);
        assert_eq!(resolve("localhost"), 0);
    }

    #[test]
    fn exit_answers_before_exiting_with_the_code() {
        let reply = route(
            "/exit",
            "code=7",
            &[],
            vec![],
            &AtomicBool::new(true),
            &Conn::default(),
        );
        assert_eq!((reply.status, reply.exit_with), (200, Some(7)));
        let bad = route(
            "/exit",
            "code=x",
            &[],
            vec![],
            &AtomicBool::new(true),
            &Conn::default(),
        );
        assert_eq!((bad.status, bad.exit_with), (400, None));
    }
}
