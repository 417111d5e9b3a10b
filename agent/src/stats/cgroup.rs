//! Reading CPU and memory figures from a cgroup tree (v2, or v1's cpuacct and memory
//! hierarchies when the host has no unified tree) and the node's from `/proc`, with
//! cAdvisor's definitions: CPU is cumulative nanoseconds, the working set is the usage
//! minus the inactive file cache (pages the kernel reclaims first).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What one cgroup (or the node) uses; `None` where a file was missing or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Cumulative CPU time in nanoseconds.
    pub(crate) cpu_ns: Option<u64>,
    pub(crate) memory_usage: Option<u64>,
    pub(crate) working_set: Option<u64>,
    pub(crate) rss: Option<u64>,
    pub(crate) page_faults: Option<u64>,
    pub(crate) major_page_faults: Option<u64>,
    /// Node only: MemAvailable.
    pub(crate) available: Option<u64>,
}

impl Usage {
    /// Whether anything was read at all (a cgroup that is gone reads as nothing).
    pub(crate) fn is_empty(&self) -> bool {
        self.cpu_ns.is_none() && self.memory_usage.is_none()
    }
}

/// A cgroup file system and the `/proc` the node's figures come from. Both are
/// parameters so tests can lay out a fake tree in a temp dir.
#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub(crate) cgroup_root: PathBuf,
    pub(crate) proc_root: PathBuf,
}

/// `key value` lines (cpu.stat, memory.stat) as a map.
fn key_values(path: &Path) -> Option<HashMap<String, u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Host {
    fn unified(&self) -> bool {
        self.cgroup_root.join("cgroup.controllers").exists()
    }

    /// The figures of the cgroup at `rel` (e.g. `/kybern/<pod uid>/<container id>`).
    pub(crate) fn cgroup(&self, rel: &str) -> Usage {
        let rel = rel.trim_start_matches('/');
        if self.unified() {
            let dir = self.cgroup_root.join(rel);
            let cpu = key_values(&dir.join("cpu.stat"));
            let stat = key_values(&dir.join("memory.stat")).unwrap_or_default();
            let current = number(&dir.join("memory.current"));
            memory_usage(
                cpu.and_then(|c| c.get("usage_usec").map(|u| u * 1000)),
                current,
                &stat,
                ["inactive_file", "anon", "pgfault", "pgmajfault"],
            )
        } else {
            let cpu = number(
                &self
                    .cgroup_root
                    .join("cpuacct")
                    .join(rel)
                    .join("cpuacct.usage"),
            );
            let mem = self.cgroup_root.join("memory").join(rel);
            let stat = key_values(&mem.join("memory.stat")).unwrap_or_default();
            memory_usage(
                cpu,
                number(&mem.join("memory.usage_in_bytes")),
                &stat,
                [
                    "total_inactive_file",
                    "total_rss",
                    "total_pgfault",
                    "total_pgmajfault",
                ],
            )
        }
    }

    /// The node's figures: CPU from `/proc/stat` (every busy state, in USER_HZ ticks of
    /// 10 ms), memory from `/proc/meminfo` as the root cgroup's (usage = MemTotal -
    /// MemFree, working set = usage - Inactive(file)).
    pub(crate) fn node(&self) -> Usage {
        let cpu_ns = std::fs::read_to_string(self.proc_root.join("stat"))
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|l| l.starts_with("cpu "))?;
                let f: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|n| n.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: all but idle and iowait.
                let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
                Some(busy * 10_000_000)
            });
        let meminfo: HashMap<String, u64> = std::fs::read_to_string(self.proc_root.join("meminfo"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let kib: u64 = v.split_whitespace().next()?.parse().ok()?;
                Some((k.to_string(), kib * 1024))
            })
            .collect();
        let usage = meminfo
            .get("MemTotal")
            .zip(meminfo.get("MemFree"))
            .map(|(t, f)| t.saturating_sub(*f));
        Usage {
            cpu_ns,
            memory_usage: usage,
            working_set: usage
                .map(|u| u.saturating_sub(meminfo.get("Inactive(file)").copied().unwrap_or(0))),
            rss: meminfo.get("AnonPages").copied(),
            page_faults: None,
            major_page_faults: None,
            available: meminfo.get("MemAvailable").copied(),
        }
    }

    /// Seconds since the epoch at which the node booted (`btime` in `/proc/stat`).
    pub(crate) fn boot_time(&self) -> Option<i64> {
        std::fs::read_to_string(self.proc_root.join("stat"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
    }
}

fn memory_usage(
    cpu_ns: Option<u64>,
    usage: Option<u64>,
    stat: &HashMap<String, u64>,
    [inactive, rss, faults, major]: [&str; 4],
) -> Usage {
    Usage {
        cpu_ns,
        memory_usage: usage,
        // cAdvisor: usage - inactive_file, never below zero.
        working_set: usage.map(|u| u.saturating_sub(stat.get(inactive).copied().unwrap_or(0))),
        rss: stat.get(rss).copied(),
        page_faults: stat.get(faults).copied(),
        major_page_faults: stat.get(major).copied(),
        available: None,
    }
}
