//! Names outside the cluster zone go to the host's resolvers (`--dns-upstream`, else the
//! nameservers of `--resolv-conf` without this server's own address), over UDP with a TCP
//! retry when the reply is truncated, through the cache.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::cache::{Cache, Key, CAPACITY, MAX_TTL};
use super::handler::{response_to, EDNS_PAYLOAD};

/// How long one upstream has to answer before the next is asked.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Forwarder {
    core: Arc<Core>,
}

/// What a question in flight needs after its first asker has gone (it is shared).
struct Core {
    upstreams: Vec<SocketAddr>,
    /// The upstream that answered last; it is asked first.
    preferred: AtomicUsize,
    cache: Cache,
    timeout: Duration,
    /// Questions being asked upstream now. A cache miss for a question already in flight
    /// waits for that flight's reply instead of asking again, so 100 pods starting at once
    /// and asking for the same outside name cost the upstream one question (CoreDNS's
    /// cache does the same with its in-flight map).
    inflight: Mutex<HashMap<Key, Flight>>,
}

/// One upstream exchange, awaited by every asker of the same question.
type Flight = Shared<BoxFuture<'static, Option<Message>>>;

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            core: Arc::new(Core {
                upstreams,
                preferred: AtomicUsize::new(0),
                cache: Cache::new(CAPACITY),
                timeout,
                inflight: Mutex::default(),
            }),
        }
    }

    pub(crate) fn upstreams(&self) -> &[SocketAddr] {
        &self.core.upstreams
    }

    /// The reply to `request` (id, RD and EDNS as the request's): from the cache, else from
    /// the first upstream that answers; SERVFAIL when none does.
    pub(crate) async fn resolve(&self, request: &Message) -> Message {
        let mut reply = response_to(request);
        reply.add_queries(request.queries.iter().cloned());
        let Some(key) = Key::of(request) else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        if let Some(hit) = self.core.cache.get(&key, Instant::now()) {
            reply.metadata.response_code = hit.rcode;
            reply.answers = hit.answers;
            reply.authorities = hit.authorities;
            reply.additionals = hit.additionals;
            return reply;
        }
        let Some(mut upstream) = self.flight(key, request).await else {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply;
        };
        // Clients keep the records no longer than the cache does (CoreDNS's cache rewrites
        // the TTLs it passes on the same way).
        for r in upstream
            .answers
            .iter_mut()
            .chain(upstream.authorities.iter_mut())
            .chain(upstream.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(MAX_TTL);
        }
        reply.metadata.response_code = upstream.metadata.response_code;
        reply.metadata.authentic_data = upstream.metadata.authentic_data;
        reply.answers = upstream.answers;
        reply.authorities = upstream.authorities;
        reply.additionals = upstream.additionals;
        reply
    }

    /// The flight asking `key` upstream: the one already under way, or a new one. A flight
    /// stores its reply in the cache before it leaves `inflight`, so a later miss finds
    /// one or the other.
    fn flight(&self, key: Key, request: &Message) -> Flight {
        let mut inflight = self.core.inflight.lock().unwrap();
        if let Some(flight) = inflight.get(&key) {
            return flight.clone();
        }
        let (core, request, k) = (self.core.clone(), request.clone(), key.clone());
        let flight = async move {
            let reply = core.ask(&request).await;
            if let Some(reply) = &reply {
                core.cache.put(k.clone(), reply, Instant::now());
            }
            core.inflight.lock().unwrap().remove(&k);
            reply
        }
        .boxed()
        .shared();
        inflight.insert(key, flight.clone());
        flight
    }
}

impl Core {
    /// Asks the upstreams in turn, the last one that answered first.
    async fn ask(&self, request: &Message) -> Option<Message> {
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        for i in 0..n {
            let index = (first + i) % n;
            let server = self.upstreams[index];
            match exchange(server, request, self.timeout).await {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Some(reply);
                }
                Err(e) => {
                    tracing::debug!(%server, error = %e, "upstream DNS server did not answer")
                }
            }
        }
        None
    }
}

/// One question to one server: UDP, then TCP if the reply came back truncated.
async fn exchange(
    server: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> std::io::Result<Message> {
    let mut query = Message::query();
    let id = query.metadata.id;
    query.metadata.recursion_desired = true;
    query.metadata.checking_disabled = request.metadata.checking_disabled;
    query.add_queries(request.queries.iter().cloned());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    if let Some(asked) = &request.edns {
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
    }
    query.set_edns(edns);
    let bytes = query.to_bytes().map_err(std::io::Error::other)?;
    let reply = tokio::time::timeout(timeout, udp(server, &bytes, &query))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    let reply = tokio::time::timeout(timeout, tcp(server, &bytes))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply over TCP"))??;
    if reply.metadata.id != id || reply.queries != query.queries {
        return Err(std::io::Error::other("a reply to another question"));
    }
    Ok(reply)
}

async fn udp(server: SocketAddr, bytes: &[u8], query: &Message) -> std::io::Result<Message> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything but the reply to this very question (a late or forged datagram) is
        // ignored, as resolvers do.
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id == query.metadata.id && reply.queries == query.queries {
            return Ok(reply);
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(std::io::Error::other)
}

/// The upstreams: `configured` if any, else the nameservers of `resolv_conf`; never this
/// server's own address (that would loop).
pub(crate) fn upstreams(
    configured: &[SocketAddr],
    resolv_conf: &Path,
    own: SocketAddr,
) -> Vec<SocketAddr> {
    let all: Vec<SocketAddr> = if configured.is_empty() {
        let text = std::fs::read_to_string(resolv_conf).unwrap_or_else(|e| {
            tracing::warn!(path = %resolv_conf.display(), error = %e, "cannot read the host's resolv.conf; names outside the cluster will not resolve");
            String::new()
        });
        nameservers(&text)
    } else {
        configured.to_vec()
    };
    all.into_iter().filter(|a| *a != own).collect()
}

/// The `nameserver` lines of a resolv.conf, on port 53.
pub(crate) fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, super::PORT))
        })
        .collect()
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
