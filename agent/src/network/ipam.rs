//! Pod addresses from the node's podCIDR, reserved on disk the way CNI's host-local plugin
//! keeps them: one file per address, named by the address and holding the pod UID, so a
//! restarted agent finds every reservation again. Addresses are handed out round-robin from
//! the last one reserved (also kept on disk), so an address just freed by a deleted pod is
//! not given to the next pod at once, where stale connections or caches could still reach it.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{check_uid, io_err, Error, Result};

/// The file remembering the last address handed out (host-local's `last_reserved_ip.0`).
const LAST_RESERVED: &str = "last_reserved_ip";

/// An IPv4 network such as a node's podCIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    /// Parses "10.42.0.0/24". Host bits are masked off as Go's `net.ParseCIDR` does. Prefixes
    /// longer than /30 are refused: they leave no address for a pod beside the gateway.
    pub fn parse(text: &str) -> Result<Self> {
        match Self::parse_range(text)? {
            cidr if cidr.prefix > 30 => Err(Error::BadCidr(text.to_string())),
            cidr => Ok(cidr),
        }
    }

    /// Parses any IPv4 range, /31 and /32 included (a Service's loadBalancerSourceRanges
    /// may name a single client). Host bits are masked off as in [`Cidr::parse`].
    pub fn parse_range(text: &str) -> Result<Self> {
        let bad = || Error::BadCidr(text.to_string());
        let (addr, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// Whether the network `network/prefix` lies inside this one.
    pub fn covers(&self, network: Ipv4Addr, prefix: u8) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        prefix >= self.prefix && u32::from(network) & mask == u32::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The first host address; the bridge holds it and pods route through it.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | (u32::MAX >> self.prefix))
    }

    /// Whether `ip` may be given to a pod: inside the network and neither the network
    /// address, the gateway nor the broadcast address.
    pub fn is_pod_address(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > u32::from(self.gateway()) && ip < u32::from(self.broadcast())
    }

    /// How many addresses pods can get: a /24 has 256 - 3 = 253.
    fn pod_addresses(&self) -> u32 {
        (u32::MAX >> self.prefix) - 2
    }

    /// The pod address after `ip`, wrapping from the last one to the first.
    fn next_pod_address(&self, ip: Ipv4Addr) -> Ipv4Addr {
        let first = u32::from(self.gateway()) + 1;
        let next = u32::from(ip).wrapping_add(1);
        if self.is_pod_address(Ipv4Addr::from(next)) {
            Ipv4Addr::from(next)
        } else {
            Ipv4Addr::from(first)
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The reservations of one node, under one directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    /// Serialises reservations within the agent; the exclusive file creation guards against
    /// anything else writing the directory.
    lock: Mutex<()>,
}

impl Ipam {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            lock: Mutex::new(()),
        }
    }

    /// The address reserved for `uid` (the same one again when it has one already), or a new
    /// one from `cidr`. A reservation outside `cidr` (the node's podCIDR changed) is dropped.
    pub fn reserve(&self, cidr: &Cidr, uid: &str) -> Result<Ipv4Addr> {
        check_uid(uid)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err(format!("create {}", self.dir.display())))?;
        for (ip, holder) in self.reservations()? {
            if holder == uid {
                if cidr.is_pod_address(ip) {
                    return Ok(ip);
                }
                self.remove(ip)?;
            }
        }
        let last = self
            .last_reserved()
            .filter(|ip| cidr.is_pod_address(*ip))
            .unwrap_or(cidr.broadcast());
        let mut candidate = last;
        for _ in 0..cidr.pod_addresses() {
            candidate = cidr.next_pod_address(candidate);
            if self.try_claim(candidate, uid)? {
                self.write_last_reserved(candidate)?;
                return Ok(candidate);
            }
        }
        Err(Error::Exhausted(cidr.to_string()))
    }

    /// The address `uid` holds, if any.
    pub fn lookup(&self, uid: &str) -> Result<Option<Ipv4Addr>> {
        Ok(self
            .reservations()?
            .into_iter()
            .find(|(_, holder)| holder == uid)
            .map(|(ip, _)| ip))
    }

    /// Frees every address `uid` holds; nothing to free is fine.
    pub fn release(&self, uid: &str) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for (ip, holder) in self.reservations()? {
            if holder == uid {
                self.remove(ip)?;
            }
        }
        Ok(())
    }

    /// Every reservation on disk, ordered by address.
    pub fn reservations(&self) -> Result<Vec<(Ipv4Addr, String)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("read {}", self.dir.display()))(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(format!("read {}", self.dir.display())))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let holder = match std::fs::read_to_string(entry.path()) {
                Ok(holder) => holder.trim().to_string(),
                // Released between listing and reading.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("read {}", entry.path().display()))(e)),
            };
            found.push((ip, holder));
        }
        found.sort();
        Ok(found)
    }

    fn path(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Claims `ip` for `uid` unless someone holds it. The UID is written to a private file
    /// first and then hard-linked to the address's name: the link fails when the name exists
    /// (exclusive like O_EXCL) and, unlike creating then writing, never leaves an empty
    /// reservation behind after a crash.
    fn try_claim(&self, ip: Ipv4Addr, uid: &str) -> Result<bool> {
        let tmp = self.dir.join(format!(".claim-{uid}"));
        write_file(&tmp, uid)?;
        let linked = std::fs::hard_link(&tmp, self.path(ip));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(format!("reserve {ip}"))(e)),
        }
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<()> {
        match std::fs::remove_file(self.path(ip)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("release {ip}"))(e)),
        }
    }

    fn last_reserved(&self) -> Option<Ipv4Addr> {
        std::fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    fn write_last_reserved(&self, ip: Ipv4Addr) -> Result<()> {
        // Written aside and renamed, so a crash leaves the old value or the new, never half.
        let tmp = self.dir.join(format!(".{LAST_RESERVED}"));
        write_file(&tmp, &ip.to_string())?;
        std::fs::rename(&tmp, self.dir.join(LAST_RESERVED))
            .map_err(io_err(format!("record {ip} as last reserved")))
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut file =
        std::fs::File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(format!("write {}", path.display())))
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;
