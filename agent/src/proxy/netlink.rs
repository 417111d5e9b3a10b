//! The proxy's nftables backend: transactions `nfnl` can encode (a partial sync that
//! rewrites a Service's chains, rules and map elements) go to the kernel as one netlink
//! batch, all others (full syncs, affinity sets, firewall chains) and every read go through
//! `nft` as before. Both ways a transaction is one batch the kernel applies whole or not at
//! all.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::nfnl;
use super::nft::{Error, Listed, NftCli, Nftables, Result, Transaction};

/// The kernel refuses a netlink message larger than the socket's send buffer (208 KiB by
/// default, `net.core.wmem_default`); bigger batches (a partial sync of more than ~50
/// Services at once) go to `nft`, which raises its buffer.
const MAX_BATCH_BYTES: usize = 128 * 1024;

/// `nft` for everything, a netlink socket for the hot path.
#[derive(Debug, Clone)]
pub struct NftNetlink {
    cli: NftCli,
    /// A named network namespace to open the socket in (tests), or this process's.
    netns: Option<PathBuf>,
    socket: Arc<Mutex<Option<Socket>>>,
    seq: Arc<AtomicU32>,
}

impl Default for NftNetlink {
    fn default() -> Self {
        Self::new()
    }
}

impl NftNetlink {
    pub fn new() -> Self {
        Self {
            cli: NftCli::new(),
            netns: None,
            socket: Arc::default(),
            seq: Arc::new(AtomicU32::new(1)),
        }
    }

    /// Works inside the named network namespace (privileged tests' scratch namespaces).
    pub fn in_netns(name: &str) -> Self {
        Self {
            cli: NftCli::in_netns(name),
            netns: Some(PathBuf::from("/run/netns").join(name)),
            ..Self::new()
        }
    }

    /// The first sequence number of a transaction's own block of 65,536 (at most 60,002
    /// used), kept below 2^30 so the numbers never wrap within a batch, also once the
    /// counter itself wrapped (after 65,536 transactions).
    fn next_block(&self) -> u32 {
        self.seq.fetch_add(1 << 16, Ordering::Relaxed) % (1 << 30)
    }

    /// Sends `batch` (its `count` commands numbered from `first`) and waits for the outcome.
    fn talk(&self, batch: &[u8], first: u32, count: u32) -> Result<()> {
        let mut guard = self.socket.lock().expect("socket lock");
        if guard.is_none() {
            *guard = Some(open(self.netns.clone())?);
        }
        let socket = guard.as_ref().expect("opened above");
        let result = exchange(socket, batch, first, count);
        if result.is_err() {
            // Replies of a failed batch may still be queued: start the next one afresh.
            *guard = None;
        }
        result
    }
}

/// A netfilter netlink socket, opened in `netns` (on a thread of its own, so this
/// process's other threads stay where they are; the socket keeps the namespace).
fn open(netns: Option<PathBuf>) -> Result<Socket> {
    let make = || -> Result<Socket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        Ok(socket)
    };
    let Some(path) = netns else {
        return make();
    };
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        make()
    })
    .join()
    .map_err(|_| Error::Failed("opening the netlink socket panicked".into()))?
}

/// Sends `batch` (begin `first - 1`, commands `first..first + count`, end after them) and
/// waits for the last command's acknowledgement or the first error: the kernel has
/// processed the whole batch before the send returns, so both are queued by then.
fn exchange(socket: &Socket, batch: &[u8], first: u32, count: u32) -> Result<()> {
    socket.send_to(batch, &SocketAddr::new(0, 0), 0)?;
    let ours = first.wrapping_sub(1)..=first + count;
    let last = first + count - 1;
    loop {
        let (datagram, _) = socket.recv_from_full()?;
        for (seq, errno) in nfnl::acks(&datagram) {
            if !ours.contains(&seq) {
                continue;
            }
            if errno != 0 {
                return Err(failure(seq.wrapping_sub(first).wrapping_add(1), errno));
            }
            if seq == last {
                return Ok(());
            }
        }
    }
}

/// Command `index` (1-based; 0 is the batch itself) failed with `errno`.
fn failure(index: u32, errno: i32) -> Error {
    let text = format!(
        "netlink: command {index} of the batch: {}",
        std::io::Error::from_raw_os_error(errno)
    );
    if errno == libc_enoent() {
        Error::NotFound(text)
    } else {
        Error::Failed(text)
    }
}

/// ENOENT, as `nft` reports "No such file or directory".
fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

#[async_trait]
impl Nftables for NftNetlink {
    async fn run(&self, tx: &Transaction) -> Result<()> {
        let first = self.next_block();
        let encoded = nfnl::encode(tx.table(), tx.text(), first);
        let Some((batch, count)) = encoded.filter(|(b, _)| b.len() <= MAX_BATCH_BYTES) else {
            return self.cli.run(tx).await;
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.talk(&batch, first + 1, count))
            .await
            .map_err(|e| Error::Failed(format!("netlink task: {e}")))?
    }

    async fn list(&self, table: &str, kind: Listed) -> Result<Vec<String>> {
        self.cli.list(table, kind).await
    }

    async fn rule_count(&self, table: &str, chain: &str) -> Result<Option<usize>> {
        self.cli.rule_count(table, chain).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_never_overflow_once_the_counter_wraps() {
        let nft = NftNetlink::new();
        nft.seq.store(u32::MAX - 5, Ordering::Relaxed);
        for _ in 0..3 {
            let first = nft.next_block();
            assert!(first.checked_add(60_002).is_some(), "block at {first}");
        }
    }
}
