//! The cluster zone (`cluster.local`): records computed per query from the shared store, as
//! CoreDNS's `kubernetes` plugin computes them, so no per-name index is kept in memory. Only
//! the reverse (PTR) owners are indexed, refreshed from the store's change notices.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::services::{ClusterState, Endpoint, Service, ServiceKey, ServiceKind, SlicesOf};

/// The TTL of every record of the zone (CoreDNS's default).
pub(crate) const TTL: u32 = 5;
/// The most labels a name of the zone has left of the zone (`_<port>._<proto>.<svc>.<ns>.svc`).
const MAX_LABELS: usize = 5;
/// The schema version of the Kubernetes DNS specification followed.
const SCHEMA_VERSION: &str = "1.0.1";

/// What the zone says about one question.
#[derive(Debug)]
pub(crate) enum Answer {
    /// An authoritative answer. NXDOMAIN and empty NOERROR carry the zone's SOA.
    Records {
        rcode: ResponseCode,
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// An ExternalName Service: its CNAME; for A and AAAA questions the target is resolved
    /// next (`chase`) and its records appended, as CoreDNS does.
    Cname {
        record: Box<Record>,
        target: Box<Name>,
        chase: bool,
    },
    /// Not ours: ask the upstream resolvers.
    Forward,
}

impl Answer {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Self {
        Self::Records {
            rcode: ResponseCode::NoError,
            answers,
            additionals,
        }
    }

    fn nodata() -> Self {
        Self::records(Vec::new(), Vec::new())
    }

    fn nxdomain() -> Self {
        Self::Records {
            rcode: ResponseCode::NXDomain,
            answers: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

/// The reverse (PTR) index: which Services own an address, not the names themselves
/// (those are built when a PTR question comes, which is rare). At 10,000 Services and
/// 50,000 endpoints a formatted name per address cost about 10 MiB; a key (two shared
/// strings) per address costs a third of that.
#[derive(Default)]
struct Reverse {
    owners: HashMap<Ipv4Addr, Owners>,
    /// Service → the addresses it put into `owners`, to take them out again.
    by_service: HashMap<ServiceKey, Box<[Ipv4Addr]>>,
}

/// The Services an address belongs to: almost always one.
enum Owners {
    One(ServiceKey),
    Many(Vec<ServiceKey>),
}

impl Owners {
    fn keys(&self) -> &[ServiceKey] {
        match self {
            Self::One(key) => std::slice::from_ref(key),
            Self::Many(keys) => keys,
        }
    }

    fn add(&mut self, key: ServiceKey) {
        match self {
            Self::One(first) => *self = Self::Many(vec![first.clone(), key]),
            Self::Many(keys) => keys.push(key),
        }
    }

    /// Takes `key` out; false when nothing is left.
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Self::One(only) => only != key,
            Self::Many(keys) => {
                keys.retain(|k| k != key);
                match keys.as_slice() {
                    [] => false,
                    [last] => {
                        let last = last.clone();
                        *self = Self::One(last);
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

pub(crate) struct Zone {
    /// The zone's apex, lower case, fully qualified.
    origin: Name,
    /// The zone as text, without the trailing dot ("cluster.local").
    domain: String,
    /// The address this server answers on (`ns.dns.<zone>`).
    listen: Ipv4Addr,
    /// `ns.dns.<zone>` and `hostmaster.<zone>`, for the SOA and NS records.
    ns: Name,
    mail: Name,
    state: Arc<ClusterState>,
    reverse: RwLock<Reverse>,
    serial: AtomicU32,
}

impl Zone {
    pub(crate) fn new(
        domain: &str,
        listen: Ipv4Addr,
        state: Arc<ClusterState>,
    ) -> Result<Self, String> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut origin = Name::from_ascii(&domain).map_err(|e| e.to_string())?;
        origin.set_fqdn(true);
        if origin.is_root() {
            return Err("the cluster domain is empty".into());
        }
        let under = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&origin))
                .map_err(|e| e.to_string())
        };
        Ok(Self {
            ns: under("ns.dns")?,
            mail: under("hostmaster")?,
            origin,
            domain,
            listen,
            state,
            reverse: RwLock::default(),
            serial: AtomicU32::new(now_serial()),
        })
    }

    pub(crate) fn state(&self) -> &Arc<ClusterState> {
        &self.state
    }

    /// Recomputes the reverse index of these Services from the store.
    pub(crate) fn refresh<'a>(&self, keys: impl IntoIterator<Item = &'a ServiceKey>) {
        let mut computed = Vec::new();
        for key in keys {
            let ips = self
                .state
                .with_service(&key.namespace, &key.name, |service, slices| {
                    reverse_ips(service, &slices)
                })
                .unwrap_or_default();
            computed.push((key, ips));
        }
        let mut reverse = self.reverse.write().unwrap();
        for (key, ips) in computed {
            if let Some(old) = reverse.by_service.remove(key) {
                for ip in old.iter() {
                    let keep = reverse.owners.get_mut(ip).is_some_and(|o| o.remove(key));
                    if !keep {
                        reverse.owners.remove(ip);
                    }
                }
            }
            if ips.is_empty() {
                continue;
            }
            for ip in &ips {
                match reverse.owners.get_mut(ip) {
                    Some(owners) => owners.add(key.clone()),
                    None => {
                        reverse.owners.insert(*ip, Owners::One(key.clone()));
                    }
                }
            }
            reverse
                .by_service
                .insert(key.clone(), ips.into_boxed_slice());
        }
        drop(reverse);
        self.serial.store(now_serial(), Ordering::Relaxed);
    }

    /// Recomputes every reverse name (after the first full list).
    pub(crate) fn refresh_all(&self) {
        let mut keys: Vec<ServiceKey> = self.state.services().into_iter().map(|(k, _)| k).collect();
        keys.extend(self.reverse.read().unwrap().by_service.keys().cloned());
        keys.sort();
        keys.dedup();
        self.refresh(&keys);
    }

    /// The names that point back at `ip` from the Service `key`: its own name for its
    /// ClusterIP, `<hostname>.<its name>` for each visible endpoint with that address.
    fn reverse_names(&self, key: &ServiceKey, ip: Ipv4Addr, out: &mut Vec<Name>) {
        let base = format!("{}.{}.svc.{}.", key.name, key.namespace, self.domain);
        self.state
            .with_service(&key.namespace, &key.name, |service, slices| {
                if matches!(service.kind, ServiceKind::ExternalName(_)) {
                    return;
                }
                if service.cluster_ip == Some(ip) {
                    out.extend(self.name(&base));
                }
                for ep in visible(service, &slices).filter(|e| e.ip == ip) {
                    out.extend(self.name(&format!("{}.{base}", endpoint_hostname(ep))));
                }
            });
    }

    fn soa(&self) -> Record {
        let soa = SOA::new(
            self.ns.clone(),
            self.mail.clone(),
            self.serial.load(Ordering::Relaxed),
            7200,
            1800,
            86400,
            TTL,
        );
        Record::from_rdata(self.origin.clone(), TTL, RData::SOA(soa))
    }

    /// The SOA record for the authority section of a reply (NXDOMAIN and NODATA).
    pub(crate) fn authority(&self) -> Record {
        self.soa()
    }

    /// Answers one question. `name` is the question's name as asked (any case).
    pub(crate) fn lookup(&self, name: &Name, qtype: RecordType) -> Answer {
        if !self.origin.zone_of(name) {
            if let Some(ip) = reverse_ip(name) {
                return self.reverse_lookup(name, ip, qtype);
            }
            return Answer::Forward;
        }
        let extra = usize::from(name.num_labels()) - usize::from(self.origin.num_labels());
        if extra > MAX_LABELS {
            return Answer::nxdomain();
        }
        // The labels left of the zone, lower-cased, rightmost first: ["svc", ns, service,
        // ...]. One lower-cased copy of the name (kept inline by `Name` for most cluster
        // names) instead of a string per label: this runs for every query.
        let lower = name.to_lowercase();
        let mut labels = [""; MAX_LABELS];
        for (i, label) in lower.iter().take(extra).enumerate() {
            // Not UTF-8: no Kubernetes name matches it (the NUL keeps it from matching).
            labels[extra - 1 - i] = std::str::from_utf8(label).unwrap_or("\0");
        }
        match &labels[..extra] {
            [] => match qtype {
                RecordType::SOA => Answer::records(vec![self.soa()], Vec::new()),
                RecordType::NS => Answer::records(vec![self.ns_record()], vec![self.ns_a()]),
                _ => Answer::nodata(),
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => Answer::records(
                    vec![Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                    )],
                    Vec::new(),
                ),
                _ => Answer::nodata(),
            },
            ["dns"] => Answer::nodata(),
            ["dns", "ns"] => match qtype {
                RecordType::A => Answer::records(vec![self.a(name, self.listen)], Vec::new()),
                _ => Answer::nodata(),
            },
            ["svc"] | ["svc", _] | ["pod"] | ["pod", _] => Answer::nodata(),
            ["pod", _ns, ip] => match parse_dashed(ip) {
                Some(ip) if qtype == RecordType::A => {
                    Answer::records(vec![self.a(name, ip)], Vec::new())
                }
                Some(_) => Answer::nodata(),
                None => Answer::nxdomain(),
            },
            ["svc", ns, svc] => self.service_lookup(name, &lower, ns, svc, qtype),
            ["svc", ns, svc, host] => self.endpoint_lookup(name, ns, svc, host, qtype),
            ["svc", ns, svc, proto, port] => {
                self.port_lookup(name, &lower, ns, svc, proto, port, qtype)
            }
            _ => Answer::nxdomain(),
        }
    }

    fn a(&self, name: &Name, ip: Ipv4Addr) -> Record {
        Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))
    }

    fn ns_record(&self) -> Record {
        Record::from_rdata(self.origin.clone(), TTL, RData::NS(NS(self.ns.clone())))
    }

    fn ns_a(&self) -> Record {
        self.a(&self.ns, self.listen)
    }

    fn name(&self, text: &str) -> Option<Name> {
        let mut n = Name::from_ascii(text).ok()?;
        n.set_fqdn(true);
        Some(n)
    }

    /// `<svc>.<ns>.svc.<zone>`. `lower` is the name lower-cased: the Service's own name, the
    /// target of its SRV records.
    fn service_lookup(
        &self,
        name: &Name,
        lower: &Name,
        ns: &str,
        svc: &str,
        qtype: RecordType,
    ) -> Answer {
        let found = self.state.with_service(ns, svc, |service, slices| {
            if let ServiceKind::ExternalName(target) = &service.kind {
                return self.cname(name, target, qtype);
            }
            match service.cluster_ip {
                Some(ip) => match qtype {
                    RecordType::A => Answer::records(vec![self.a(name, ip)], Vec::new()),
                    RecordType::SRV => {
                        let weight = srv_weight(service.ports.len());
                        let answers = service
                            .ports
                            .iter()
                            .map(|p| srv(name, weight, p.port, lower.clone()))
                            .collect();
                        Answer::records(answers, vec![self.a(lower, ip)])
                    }
                    _ => Answer::nodata(),
                },
                None => {
                    let endpoints: Vec<&Endpoint> = visible(service, &slices).collect();
                    if endpoints.is_empty() {
                        // Spec 2.4.1: a headless Service without ready endpoints has no name.
                        return Answer::nxdomain();
                    }
                    match qtype {
                        RecordType::A => Answer::records(
                            endpoints.iter().map(|e| self.a(name, e.ip)).collect(),
                            Vec::new(),
                        ),
                        RecordType::SRV => {
                            let ports = slice_ports(&slices, None);
                            self.endpoint_srvs(name, lower, &endpoints, &ports)
                        }
                        _ => Answer::nodata(),
                    }
                }
            }
        });
        found.unwrap_or_else(Answer::nxdomain)
    }

    fn cname(&self, name: &Name, target: &str, qtype: RecordType) -> Answer {
        let Some(target) = self.name(target.trim_end_matches('.')) else {
            return Answer::nxdomain();
        };
        Answer::Cname {
            record: Box::new(Record::from_rdata(
                name.clone(),
                TTL,
                RData::CNAME(CNAME(target.clone())),
            )),
            target: Box::new(target),
            chase: matches!(qtype, RecordType::A | RecordType::AAAA),
        }
    }

    /// `<host>.<svc>.<ns>.svc.<zone>`: the endpoints whose hostname (or dashed address) is
    /// `host`. `_tcp.<svc>...` and the like are empty non-terminals of SRV names.
    fn endpoint_lookup(
        &self,
        name: &Name,
        ns: &str,
        svc: &str,
        host: &str,
        qtype: RecordType,
    ) -> Answer {
        let found = self.state.with_service(ns, svc, |service, slices| {
            if matches!(service.kind, ServiceKind::ExternalName(_)) {
                return Answer::nxdomain();
            }
            if let Some(proto) = host.strip_prefix('_') {
                return match proto {
                    "tcp" | "udp" | "sctp" => Answer::nodata(),
                    _ => Answer::nxdomain(),
                };
            }
            let matching: Vec<Ipv4Addr> = visible(service, &slices)
                .filter(|e| endpoint_hostname(e) == host)
                .map(|e| e.ip)
                .collect();
            if matching.is_empty() {
                return Answer::nxdomain();
            }
            match qtype {
                RecordType::A => Answer::records(
                    matching.iter().map(|ip| self.a(name, *ip)).collect(),
                    Vec::new(),
                ),
                _ => Answer::nodata(),
            }
        });
        found.unwrap_or_else(Answer::nxdomain)
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV records of a named port.
    #[allow(clippy::too_many_arguments)]
    fn port_lookup(
        &self,
        name: &Name,
        lower: &Name,
        ns: &str,
        svc: &str,
        proto: &str,
        port: &str,
        qtype: RecordType,
    ) -> Answer {
        let (Some(port), Some(proto)) = (port.strip_prefix('_'), proto.strip_prefix('_')) else {
            return Answer::nxdomain();
        };
        // The Service's own name: the question without `_<port>._<proto>`.
        let svc_name = lower.trim_to(usize::from(lower.num_labels()) - 2);
        let found = self.state.with_service(ns, svc, |service, slices| {
            match (&service.kind, service.cluster_ip) {
                (ServiceKind::ExternalName(_), _) => Answer::nxdomain(),
                (_, Some(ip)) => {
                    let mut ports = service.ports.iter().filter(|p| {
                        !p.name.is_empty() && &*p.name == port && p.protocol.lower() == proto
                    });
                    let count = ports.clone().count();
                    if count == 0 {
                        return Answer::nxdomain();
                    }
                    if qtype != RecordType::SRV {
                        return Answer::nodata();
                    }
                    let weight = srv_weight(count);
                    let answers = ports
                        .by_ref()
                        .map(|p| srv(name, weight, p.port, svc_name.clone()))
                        .collect();
                    Answer::records(answers, vec![self.a(&svc_name, ip)])
                }
                (_, None) => {
                    let endpoints: Vec<&Endpoint> = visible(service, &slices).collect();
                    let ports = slice_ports(&slices, Some((port, proto)));
                    if endpoints.is_empty() || ports.is_empty() {
                        return Answer::nxdomain();
                    }
                    if qtype != RecordType::SRV {
                        return Answer::nodata();
                    }
                    self.endpoint_srvs(name, &svc_name, &endpoints, &ports)
                }
            }
        });
        found.unwrap_or_else(Answer::nxdomain)
    }

    /// One SRV per endpoint and port, target the endpoint's own name under `svc_name`, with
    /// its A record in the additional section.
    fn endpoint_srvs(
        &self,
        name: &Name,
        svc_name: &Name,
        endpoints: &[&Endpoint],
        ports: &[u16],
    ) -> Answer {
        let weight = srv_weight(endpoints.len() * ports.len().max(1));
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for ep in endpoints {
            let Ok(target) = svc_name.prepend_label(endpoint_hostname(ep).as_str()) else {
                continue;
            };
            for port in ports {
                answers.push(srv(name, weight, *port, target.clone()));
            }
            additionals.push(self.a(&target, ep.ip));
        }
        Answer::records(answers, additionals)
    }

    fn reverse_lookup(&self, name: &Name, ip: Ipv4Addr, qtype: RecordType) -> Answer {
        let owners: Vec<ServiceKey> = match self.reverse.read().unwrap().owners.get(&ip) {
            Some(owners) => owners.keys().to_vec(),
            None => return Answer::Forward,
        };
        let mut targets = Vec::new();
        for key in &owners {
            self.reverse_names(key, ip, &mut targets);
        }
        if targets.is_empty() {
            // The index is a change behind the store: the address is no longer ours.
            return Answer::Forward;
        }
        if qtype != RecordType::PTR {
            return Answer::nodata();
        }
        let answers = targets
            .into_iter()
            .map(|t| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(t))))
            .collect();
        Answer::records(answers, Vec::new())
    }
}

fn srv(name: &Name, weight: u16, port: u16, target: Name) -> Record {
    Record::from_rdata(
        name.clone(),
        TTL,
        RData::SRV(SRV::new(0, weight, port, target)),
    )
}

/// Equal weights summing to about 100, as CoreDNS gives records of one priority.
fn srv_weight(count: usize) -> u16 {
    u16::try_from(100 / count.max(1)).unwrap_or(1).max(1)
}

/// The endpoints DNS shows: ready ones, or all with publishNotReadyAddresses; each address
/// once.
fn visible<'a>(
    service: &'a Service,
    slices: &'a SlicesOf<'_>,
) -> impl Iterator<Item = &'a Endpoint> + 'a {
    let mut seen: Vec<Ipv4Addr> = Vec::new();
    slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(move |ep| {
            let wanted = (ep.ready || service.publish_not_ready) && !seen.contains(&ep.ip);
            if wanted {
                seen.push(ep.ip);
            }
            wanted
        })
}

/// The ports of a Service's slices, each once; only the named port `filter` if given.
fn slice_ports(slices: &SlicesOf<'_>, filter: Option<(&str, &str)>) -> Vec<u16> {
    let mut out = Vec::new();
    for slice in slices.iter() {
        for (pname, proto, port) in &slice.ports {
            let wanted = match filter {
                Some((n, p)) => !pname.is_empty() && &**pname == n && proto.lower() == p,
                None => true,
            };
            if wanted && !out.contains(port) {
                out.push(*port);
            }
        }
    }
    out
}

/// An endpoint's DNS label: its hostname, else its address with dashes (CoreDNS's
/// `endpointHostname`).
pub(crate) fn endpoint_hostname(ep: &Endpoint) -> String {
    match ep.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => h.to_ascii_lowercase(),
        None => ep.ip.to_string().replace('.', "-"),
    }
}

/// The addresses a Service puts into the reverse zone: its ClusterIP and its visible
/// endpoints'; none for an ExternalName.
fn reverse_ips(service: &Service, slices: &SlicesOf<'_>) -> Vec<Ipv4Addr> {
    if matches!(service.kind, ServiceKind::ExternalName(_)) {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = service
        .cluster_ip
        .into_iter()
        .chain(visible(service, slices).map(|e| e.ip))
        .collect();
    // An endpoint may have the ClusterIP's address: the Service owns it once.
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// `1-2-3-4` → 1.2.3.4.
fn parse_dashed(label: &str) -> Option<Ipv4Addr> {
    let mut parts = label.split('-');
    let mut octets = [0u8; 4];
    for o in &mut octets {
        *o = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// `d.c.b.a.in-addr.arpa.` → a.b.c.d; anything else (shorter names, IPv6) → None.
fn reverse_ip(name: &Name) -> Option<Ipv4Addr> {
    if name.num_labels() != 6 {
        return None;
    }
    let labels: Vec<&[u8]> = name.iter().collect();
    if !labels[4].eq_ignore_ascii_case(b"in-addr") || !labels[5].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let mut octets = [0u8; 4];
    for (i, label) in labels[..4].iter().enumerate() {
        octets[3 - i] = std::str::from_utf8(label).ok()?.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

fn now_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
#[path = "zone_tests.rs"]
mod tests;
