//! Names of the per-service chains and sets, spelled as kube-proxy's nftables mode spells
//! them: a prefix, the first 8 characters of base32(SHA-256(base)), a dash and the base
//! itself, where base is `ns/svc/proto/port` or `ns/svc/proto/port__ip/port`. The hash keeps
//! names unique when a long base is cut, and tells apart endpoints that differ in one digit.

use std::net::Ipv4Addr;

use crate::services::{Protocol, ServiceKey};

/// nftables names may be 256 bytes; kube-proxy keeps the part after the prefix to 240.
const BASE_MAX: usize = 240;

/// One port of one Service: what its chain names are built from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortName {
    pub service: ServiceKey,
    pub port: String,
    pub protocol: Protocol,
}

impl PortName {
    /// `ns/svc/proto/port`.
    fn base(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.service.namespace,
            self.service.name,
            self.protocol.lower(),
            self.port
        )
    }

    /// `ns/svc:port` (`ns/svc` for an unnamed port), upstream's `ServicePortName.String()`,
    /// used in element comments.
    pub fn display(&self) -> String {
        if self.port.is_empty() {
            self.service.to_string()
        } else {
            format!("{}:{}", self.service, self.port)
        }
    }

    /// The chain internal traffic takes with internalTrafficPolicy Cluster.
    pub fn service_chain(&self) -> String {
        format!("service-{}", hashed(&self.base()))
    }

    /// The chain of this node's endpoints (traffic policy Local).
    pub fn local_chain(&self) -> String {
        format!("local-{}", hashed(&self.base()))
    }

    /// The chain of NodePort, externalIP and load-balancer traffic.
    pub fn external_chain(&self) -> String {
        format!("external-{}", hashed(&self.base()))
    }

    /// The loadBalancerSourceRanges filter.
    pub fn firewall_chain(&self) -> String {
        format!("firewall-{}", hashed(&self.base()))
    }

    pub fn endpoint_chain(&self, ip: Ipv4Addr, port: u16) -> String {
        format!("endpoint-{}", hashed(&self.endpoint_base(ip, port)))
    }

    /// The ClientIP session-affinity set of one endpoint.
    pub fn affinity_set(&self, ip: Ipv4Addr, port: u16) -> String {
        format!("affinity-{}", hashed(&self.endpoint_base(ip, port)))
    }

    fn endpoint_base(&self, ip: Ipv4Addr, port: u16) -> String {
        format!("{}__{ip}/{port}", self.base())
    }
}

/// Whether a chain or set name is one of the per-service ones a sync may find stale: a
/// prefix, then the 8-character hash and a dash (so `service-endpoints-check` and
/// `firewall-check`, fixed chains of the table, are not).
pub fn is_service_object(name: &str) -> bool {
    [
        "service-",
        "local-",
        "external-",
        "firewall-",
        "endpoint-",
        "affinity-",
    ]
    .iter()
    .filter_map(|p| name.strip_prefix(p))
    .any(|rest| {
        let b = rest.as_bytes();
        b.len() > 9
            && b[8] == b'-'
            && b[..8]
                .iter()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c))
    })
}

/// `HASH-base`, cut to 240 characters with "..." at the end.
fn hashed(base: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, base.as_bytes());
    let mut name = base32_prefix(digest.as_ref());
    name.push('-');
    name.push_str(base);
    if name.len() > BASE_MAX {
        let mut cut = BASE_MAX - 3;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name
}

/// The first 8 characters of RFC 4648 base32 (Go's `base32.StdEncoding`): 8 × 5 bits, so
/// exactly the first 5 bytes of the digest.
fn base32_prefix(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    for byte in &bytes[..5] {
        bits = (bits << 8) | u64::from(*byte);
    }
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> PortName {
        PortName {
            service: ServiceKey::new("default", "web"),
            port: "http".into(),
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn chain_names_carry_the_hash_of_their_base_as_kube_proxy_spells_them() {
        let cases = [
            (
                "service chain",
                web().service_chain(),
                "service-SUSTUHLJ-default/web/tcp/http",
            ),
            (
                "endpoint chain",
                web().endpoint_chain("10.42.0.5".parse().unwrap(), 8080),
                "endpoint-WKF2J3BI-default/web/tcp/http__10.42.0.5/8080",
            ),
            (
                "other endpoint chain",
                web().endpoint_chain("10.42.1.7".parse().unwrap(), 8080),
                "endpoint-R4AVLYLO-default/web/tcp/http__10.42.1.7/8080",
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn endpoint_chains_and_affinity_sets_share_the_endpoint_hash() {
        let ip = "10.42.0.8".parse().unwrap();
        let sticky = PortName {
            service: ServiceKey::new("default", "sticky"),
            ..web()
        };
        assert_eq!(
            sticky.affinity_set(ip, 8080),
            "affinity-M2MUV4TV-default/sticky/tcp/http__10.42.0.8/8080"
        );
        assert_eq!(
            sticky.endpoint_chain(ip, 8080),
            "endpoint-M2MUV4TV-default/sticky/tcp/http__10.42.0.8/8080"
        );
    }

    #[test]
    fn only_hashed_names_count_as_per_service_objects() {
        let cases = [
            (
                "service chain",
                "service-SUSTUHLJ-default/web/tcp/http",
                true,
            ),
            (
                "affinity set",
                "affinity-M2MUV4TV-default/sticky/tcp/http__10.42.0.8/8080",
                true,
            ),
            ("fixed chain", "service-endpoints-check", false),
            ("fixed chain", "firewall-check", false),
            ("fixed map", "service-ips", false),
            ("fixed map", "service-nodeports", false),
        ];
        for (what, name, want) in cases {
            assert_eq!(is_service_object(name), want, "{what} {name}");
        }
    }

    #[test]
    fn a_long_base_is_cut_to_240_characters_ending_in_dots() {
        let long = PortName {
            service: ServiceKey::new(&"n".repeat(100), &"s".repeat(100)),
            port: "p".repeat(63),
            protocol: Protocol::Sctp,
        };
        let name = long.endpoint_chain("10.42.255.255".parse().unwrap(), 65535);
        let base = name.strip_prefix("endpoint-").unwrap();
        assert_eq!(base.len(), 240);
        assert!(base.ends_with("..."), "{base}");
    }
}
