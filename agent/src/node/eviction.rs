//! The hard eviction thresholds (the kubelet's `--eviction-hard`): the memory and disk the
//! node keeps free. Allocatable leaves them aside, and crossing one sets MemoryPressure or
//! DiskPressure, whose taints keep new pods away.

use std::str::FromStr;

use crate::volumes::quantity::parse_nanos;

/// `memory.available` and `nodefs.available` thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    /// Bytes of memory that must stay available.
    pub memory_bytes: u64,
    /// Percent of the agent's file system that must stay available.
    pub disk_percent: u64,
}

impl Default for Eviction {
    /// The kubelet's defaults: `memory.available<100Mi,nodefs.available<10%`.
    fn default() -> Self {
        Eviction {
            memory_bytes: 100 << 20,
            disk_percent: 10,
        }
    }
}

impl std::fmt::Display for Eviction {
    /// As the kubelet's flag takes it, so the value round-trips through [`FromStr`].
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.memory_bytes;
        let memory = match (b % (1 << 20), b % 1024) {
            (0, _) => format!("{}Mi", b >> 20),
            (_, 0) => format!("{}Ki", b >> 10),
            _ => b.to_string(),
        };
        write!(
            f,
            "memory.available<{memory},nodefs.available<{}%",
            self.disk_percent
        )
    }
}

impl FromStr for Eviction {
    type Err = String;

    /// `memory.available<100Mi,nodefs.available<10%`, as the kubelet takes it; a signal
    /// left out keeps its default.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Eviction::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item.split_once('<').ok_or_else(|| {
                format!("{item:?}: expected SIGNAL<VALUE, e.g. nodefs.available<10%")
            })?;
            match signal {
                "memory.available" => {
                    let nanos = parse_nanos(value).filter(|n| *n >= 0).ok_or_else(|| format!("{item:?}: {value:?} is not a quantity such as 100Mi"))?;
                    out.memory_bytes = (nanos / 1_000_000_000) as u64;
                }
                "nodefs.available" => {
                    let percent = value
                        .strip_suffix('%')
                        .and_then(|p| p.parse::<u64>().ok())
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("{item:?}: kybern takes nodefs.available as a whole percentage such as 10%"))?;
                    out.disk_percent = percent;
                }
                other => return Err(format!("eviction signal {other:?} is not supported by kybern (memory.available and nodefs.available are)")),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_the_kubelet_writes_them() {
        let cases: [(&str, &str, Result<Eviction, &str>); 6] = [
            ("empty keeps the defaults", "", Ok(Eviction::default())),
            ("both", "memory.available<1Gi,nodefs.available<5%", Ok(Eviction { memory_bytes: 1 << 30, disk_percent: 5 })),
            ("one keeps the other's default", "nodefs.available<1%", Ok(Eviction { disk_percent: 1, ..Eviction::default() })),
            ("an unknown signal", "imagefs.available<15%", Err("eviction signal \"imagefs.available\" is not supported by kybern (memory.available and nodefs.available are)")),
            ("no comparison", "nodefs.available=10%", Err("\"nodefs.available=10%\": expected SIGNAL<VALUE, e.g. nodefs.available<10%")),
            ("a disk quantity", "nodefs.available<1Gi", Err("\"nodefs.available<1Gi\": kybern takes nodefs.available as a whole percentage such as 10%")),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                input.parse::<Eviction>(),
                want.map_err(String::from),
                "{name}"
            );
        }
        let default = Eviction::default();
        assert_eq!(
            default.to_string(),
            "memory.available<100Mi,nodefs.available<10%"
        );
        let odd = Eviction {
            memory_bytes: 1536,
            disk_percent: 1,
        };
        assert_eq!(odd.to_string().parse::<Eviction>(), Ok(odd), "{odd}");
        assert_eq!(
            default.to_string().parse::<Eviction>(),
            Ok(default),
            "the printed default parses back"
        );
    }
}
