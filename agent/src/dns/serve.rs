//! The server's own loops: two tasks reading one UDP socket (zone answers inline, forwarded
//! questions in their own task) and a TCP listener (RFC 1035 length framing, several
//! questions per connection, closed after 10 s idle).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::forward::{self, Forwarder, TIMEOUT};
use super::handler::{self, Outcome};
use super::zone::{Answer, Zone};
use super::{DnsConfig, Error};
use crate::services::ClusterState;

/// How long a TCP connection may sit without a question.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// UDP readers sharing the socket.
const UDP_TASKS: usize = 2;

/// A bound server: both sockets listen, nothing is answered until [`Server::serve`].
pub struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    zone: Arc<Zone>,
    forwarder: Arc<Forwarder>,
}

impl Server {
    /// Binds UDP and TCP on `config.listen:port` (port 0: one free port for both).
    pub async fn bind(
        config: &DnsConfig,
        port: u16,
        state: Arc<ClusterState>,
    ) -> Result<Self, Error> {
        let zone =
            Zone::new(&config.domain, config.listen, state).map_err(|reason| Error::Domain {
                domain: config.domain.clone(),
                reason,
            })?;
        let (udp, tcp) = bind_both(SocketAddr::from((config.listen, port))).await?;
        let own = SocketAddr::from((config.listen, super::PORT));
        let upstreams = forward::upstreams(&config.upstreams, &config.resolv_conf, own);
        if upstreams.is_empty() {
            tracing::warn!(
                "cluster DNS: no upstream resolvers; names outside {} get SERVFAIL",
                config.domain
            );
        }
        Ok(Self {
            udp: Arc::new(udp),
            tcp,
            zone: Arc::new(zone),
            forwarder: Arc::new(Forwarder::new(upstreams, TIMEOUT)),
        })
    }

    /// The address both sockets listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The upstream resolvers in use.
    pub fn upstreams(&self) -> &[SocketAddr] {
        self.forwarder.upstreams()
    }

    /// Answers until the future is dropped.
    pub async fn serve(self) -> Result<(), Error> {
        let mut tasks = tokio::task::JoinSet::new();
        let zone = self.zone.clone();
        tasks.spawn(async move {
            keep_reverse_names(zone).await;
            Ok(())
        });
        for _ in 0..UDP_TASKS {
            let (udp, zone, fwd) = (self.udp.clone(), self.zone.clone(), self.forwarder.clone());
            tasks.spawn(async move { serve_udp(udp, zone, fwd).await });
        }
        let (tcp, zone, fwd) = (self.tcp, self.zone.clone(), self.forwarder.clone());
        tasks.spawn(async move { serve_tcp(tcp, zone, fwd).await });
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(Error::Io(std::io::Error::other(e))),
            }
        }
        Ok(())
    }
}

async fn bind_both(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let bind_err = |proto, addr, source| Error::Bind {
        addr,
        proto,
        source,
    };
    // With port 0 the TCP port the kernel picks may be taken for UDP: try a few.
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    loop {
        attempts -= 1;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_err("TCP", addr, e))?;
        let bound = tcp.local_addr().map_err(Error::Io)?;
        match UdpSocket::bind(bound).await {
            Ok(udp) => return Ok((udp, tcp)),
            Err(e) if attempts == 0 => return Err(bind_err("UDP", bound, e)),
            Err(_) => continue,
        }
    }
}

/// Keeps the zone's reverse names in step with the store.
async fn keep_reverse_names(zone: Arc<Zone>) {
    let mut sub = zone.state().subscribe();
    loop {
        let changes = sub.next().await;
        if changes.became_synced {
            zone.refresh_all();
        } else {
            zone.refresh(&changes.services);
        }
    }
}

async fn serve_udp(
    udp: Arc<UdpSocket>,
    zone: Arc<Zone>,
    fwd: Arc<Forwarder>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(usize::from(handler::EDNS_PAYLOAD));
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors of earlier replies surface here on some kernels: not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let (outcome, limit) = handler::handle(&zone, &buf[..n]);
        match outcome {
            Outcome::Drop => {}
            Outcome::Reply(reply) => {
                handler::encode_into(&reply, limit, &mut out);
                let _ = udp.send_to(&out, peer).await;
            }
            slow => {
                let (udp, zone, fwd) = (udp.clone(), zone.clone(), fwd.clone());
                tokio::spawn(async move {
                    if let Some(reply) = finish(&zone, &fwd, slow).await {
                        let _ = udp.send_to(&handler::encode(&reply, limit), peer).await;
                    }
                });
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Arc<Zone>,
    fwd: Arc<Forwarder>,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin or stop.
                tracing::warn!(error = %e, "cluster DNS: accepting a TCP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (zone, fwd) = (zone.clone(), fwd.clone());
        tokio::spawn(async move {
            let _ = tcp_connection(stream, &zone, &fwd).await;
        });
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    zone: &Zone,
    fwd: &Forwarder,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        buf.resize(len, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let (outcome, _) = handler::handle(zone, &buf);
        let reply = match outcome {
            Outcome::Drop => continue,
            Outcome::Reply(reply) => reply,
            slow => match finish(zone, fwd, slow).await {
                Some(reply) => reply,
                None => continue,
            },
        };
        let bytes = handler::encode(&reply, usize::from(u16::MAX));
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
    }
}

/// The replies that need the upstreams: forwarded questions and ExternalName targets.
pub(crate) async fn finish(zone: &Zone, fwd: &Forwarder, outcome: Outcome) -> Option<Message> {
    match outcome {
        Outcome::Drop => None,
        Outcome::Reply(reply) => Some(reply),
        Outcome::Forward(request) => Some(fwd.resolve(&request).await),
        Outcome::Chase(chase) => {
            let handler::Chase {
                mut reply,
                target,
                request,
            } = *chase;
            let qtype = request.queries[0].query_type();
            match zone.lookup(&target, qtype) {
                Answer::Records { rcode, answers, .. } => {
                    handler::append_chase(&mut reply, rcode, answers);
                }
                // One level only: a CNAME to another ExternalName is not followed further.
                Answer::Cname { record, .. } => {
                    let rcode = reply.metadata.response_code;
                    handler::append_chase(&mut reply, rcode, vec![*record]);
                }
                Answer::Forward => {
                    let upstream = fwd.resolve(&handler::chase_query(&request, target)).await;
                    handler::append_chase(
                        &mut reply,
                        upstream.metadata.response_code,
                        upstream.answers,
                    );
                }
            }
            Some(reply)
        }
    }
}
