//! nf_tables netlink messages for the commands a partial sync sends most: adding, flushing
//! and deleting regular chains, adding the proxy's common rule shapes (the per-Service
//! masquerade check, the random pick, jumps and gotos, an endpoint's hairpin mark and DNAT)
//! and adding or deleting the elements of its sets and verdict maps.
//! `nft -f -` spends ~0.5 s fetching every chain of the namespace before any `add rule` or
//! `add element` once 10,000 Services (60,000 chains) are loaded, because the kernel's
//! chain dump restarts from the first chain on every page; these messages need no cache.
//! A transaction with any line not recognised here is not encoded at all (`None`): the
//! caller hands it to `nft` whole, so every transaction stays one atomic batch.
//!
//! The encodings are the ones `nft --debug=netlink` prints for the same text (nft 1.0.6):
//! e.g. `ip saddr 10.44.0.1 jump mark-for-masquerade` is `payload load 4b @ network header
//! + 12 => reg 1`, `cmp eq reg 1 0x01002c0a`, `immediate reg 0 jump -> mark-for-masquerade`.

use std::net::Ipv4Addr;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NLMSG_ERROR: u16 = 2;
const NFPROTO_IPV4: u8 = 2;

// Attribute numbers from linux/netfilter/nf_tables.h.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const UDATA_COMMENT: u8 = 0;
const NFTA_RULE_USERDATA: u16 = 7;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_SADDR: u32 = 1;
/// `type local` of `fib`, compared in host order.
const RTN_LOCAL: u32 = 2;
const NF_DROP: i32 = 0;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_NG_RANDOM: u32 = 1;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// Larger transactions go to `nft` (sequence numbers are handed out 65,536 at a time).
const MAX_COMMANDS: u32 = 60_000;

/// A netlink message being built: attributes are appended, nests closed by offset.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[family, 0]);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn str(&mut self, ty: u16, s: &str) {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.attr(ty, &bytes);
    }

    fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn begin(&mut self, ty: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One expression of a rule, as nft would encode it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Payload { base: u32, offset: u32, len: u32 },
    MetaL4proto,
    Cmp { op: u32, data: Vec<u8> },
    Mask { mask: Vec<u8> },
    Numgen { modulus: u32 },
    Verdict { code: i32, chain: String },
    Value { reg: u32, data: Vec<u8> },
    Dnat,
    FibSaddrType,
}

impl Expr {
    fn write(&self, m: &mut Msg) {
        let elem = m.begin(NFTA_LIST_ELEM);
        let name = match self {
            Expr::Payload { .. } => "payload",
            Expr::MetaL4proto => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Mask { .. } => "bitwise",
            Expr::Numgen { .. } => "numgen",
            Expr::Verdict { .. } | Expr::Value { .. } => "immediate",
            Expr::Dnat => "nat",
            Expr::FibSaddrType => "fib",
        };
        m.str(NFTA_EXPR_NAME, name);
        let data = m.begin(NFTA_EXPR_DATA);
        match self {
            Expr::Payload { base, offset, len } => {
                m.be32(1, NFT_REG_1);
                m.be32(2, *base);
                m.be32(3, *offset);
                m.be32(4, *len);
            }
            Expr::MetaL4proto => {
                m.be32(1, NFT_REG_1);
                m.be32(2, NFT_META_L4PROTO);
            }
            Expr::Cmp { op, data } => {
                m.be32(1, NFT_REG_1);
                m.be32(2, *op);
                let d = m.begin(3);
                m.attr(NFTA_DATA_VALUE, data);
                m.end(d);
            }
            Expr::Mask { mask } => {
                m.be32(1, NFT_REG_1);
                m.be32(2, NFT_REG_1);
                m.be32(3, mask.len() as u32);
                let d = m.begin(4);
                m.attr(NFTA_DATA_VALUE, mask);
                m.end(d);
                let d = m.begin(5);
                m.attr(NFTA_DATA_VALUE, &vec![0; mask.len()]);
                m.end(d);
            }
            Expr::Numgen { modulus } => {
                m.be32(1, NFT_REG_1);
                m.be32(2, *modulus);
                m.be32(3, NFT_NG_RANDOM);
            }
            Expr::Verdict { code, chain } => {
                m.be32(1, NFT_REG_VERDICT);
                let d = m.begin(2);
                let v = m.begin(NFTA_DATA_VERDICT);
                m.be32(NFTA_VERDICT_CODE, *code as u32);
                m.str(NFTA_VERDICT_CHAIN, chain);
                m.end(v);
                m.end(d);
            }
            Expr::Value { reg, data } => {
                m.be32(1, *reg);
                let d = m.begin(2);
                m.attr(NFTA_DATA_VALUE, data);
                m.end(d);
            }
            Expr::Dnat => {
                m.be32(1, NFT_NAT_DNAT);
                m.be32(2, u32::from(NFPROTO_IPV4));
                m.be32(3, NFT_REG_1);
                m.be32(5, NFT_REG_2);
                m.be32(7, NF_NAT_RANGE_PROTO_SPECIFIED);
            }
            Expr::FibSaddrType => {
                m.be32(1, NFT_REG_1);
                m.be32(2, NFT_FIB_RESULT_ADDRTYPE);
                m.be32(3, NFTA_FIB_F_SADDR);
            }
        }
        m.end(data);
        m.end(elem);
    }
}

fn proto_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        _ => None,
    }
}

fn ip_match(offset: u32, ip: &str, op: u32) -> Option<Vec<Expr>> {
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some(vec![
        Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len: 4,
        },
        Expr::Cmp {
            op,
            data: ip.octets().to_vec(),
        },
    ])
}

fn verdict(word: &str, chain: &str) -> Option<Expr> {
    let code = match word {
        "jump" => NFT_JUMP,
        "goto" => NFT_GOTO,
        _ => return None,
    };
    Some(Expr::Verdict {
        code,
        chain: chain.to_string(),
    })
}

/// One set or map element as `render` writes it: the key's bytes (each part of a
/// concatenation padded to 4 bytes, as nft does), an optional comment and verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Elem {
    key: Vec<u8>,
    comment: Option<String>,
    verdict: Option<(i32, Option<String>)>,
}

fn key_bytes(key: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for part in key.split(" . ") {
        let bytes: [u8; 4] = if let Ok(ip) = part.parse::<Ipv4Addr>() {
            ip.octets()
        } else if let Some(p) = element_proto(part) {
            [p, 0, 0, 0]
        } else {
            let [a, b] = part.parse::<u16>().ok()?.to_be_bytes();
            [a, b, 0, 0]
        };
        out.extend_from_slice(&bytes);
    }
    Some(out)
}

fn element_proto(name: &str) -> Option<u8> {
    match name {
        "sctp" => Some(132),
        other => proto_number(other),
    }
}

/// `{ KEY [comment "C"] [: VERDICT] }` (with a key only when deleting).
fn element(text: &str, delete: bool) -> Option<Elem> {
    let inner = text.strip_prefix("{ ")?.strip_suffix(" }")?;
    let (head, value) = match inner.rsplit_once(" : ") {
        Some((head, value)) => (head, Some(value)),
        None => (inner, None),
    };
    let (key, comment) = match head.split_once(" comment \"") {
        Some((key, c)) => (key, Some(c.strip_suffix('"')?.to_string())),
        None => (head, None),
    };
    if comment
        .as_deref()
        .is_some_and(|c| c.contains('"') || c.len() > 200)
    {
        return None;
    }
    let verdict = match value.map(|v| v.split_whitespace().collect::<Vec<_>>()) {
        None => None,
        Some(words) => match words.as_slice() {
            ["drop"] => Some((NF_DROP, None)),
            ["goto", chain] => Some((NFT_GOTO, Some(chain.to_string()))),
            ["jump", chain] => Some((NFT_JUMP, Some(chain.to_string()))),
            _ => return None,
        },
    };
    if delete && (verdict.is_some() || comment.is_some()) {
        return None;
    }
    Some(Elem {
        key: key_bytes(key)?,
        comment,
        verdict,
    })
}

impl Elem {
    fn write(&self, m: &mut Msg) {
        let list = m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        let elem = m.begin(NFTA_LIST_ELEM);
        let key = m.begin(NFTA_SET_ELEM_KEY);
        m.attr(NFTA_DATA_VALUE, &self.key);
        m.end(key);
        if let Some((code, chain)) = &self.verdict {
            let data = m.begin(NFTA_SET_ELEM_DATA);
            let v = m.begin(NFTA_DATA_VERDICT);
            m.be32(NFTA_VERDICT_CODE, *code as u32);
            if let Some(chain) = chain {
                m.str(NFTA_VERDICT_CHAIN, chain);
            }
            m.end(v);
            m.end(data);
        }
        if let Some(comment) = &self.comment {
            m.attr(NFTA_SET_ELEM_USERDATA, &udata_comment(comment));
        }
        m.end(elem);
        m.end(list);
    }
}

/// `ip saddr [!=] NET/BITS`: the source masked, compared with the network.
fn cidr_match(cidr: &str, op: u32) -> Option<Vec<Expr>> {
    let (net, bits) = cidr.split_once('/')?;
    let net: Ipv4Addr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    let mut e = vec![Expr::Payload {
        base: NFT_PAYLOAD_NETWORK_HEADER,
        offset: 12,
        len: 4,
    }];
    if bits < 32 {
        e.push(Expr::Mask {
            mask: mask.to_be_bytes().to_vec(),
        });
    }
    e.push(Expr::Cmp {
        op,
        data: (u32::from(net) & mask).to_be_bytes().to_vec(),
    });
    Some(e)
}

/// A rule's expressions and its comment, if it has one (`... comment "text"`).
fn commented_rule(text: &str) -> Option<(Vec<Expr>, Option<&str>)> {
    match text.split_once(" comment \"") {
        Some((body, comment)) => {
            let comment = comment.strip_suffix('"')?;
            if comment.contains('"') || comment.len() > 200 {
                return None;
            }
            Some((rule(body)?, Some(comment)))
        }
        None => Some((rule(text)?, None)),
    }
}

/// A comment as nft stores it in a rule's or element's user data: one TLV of type 0
/// (`NFTNL_UDATA_RULE_COMMENT`, `NFTNL_UDATA_SET_ELEM_COMMENT`), NUL-terminated.
fn udata_comment(comment: &str) -> Vec<u8> {
    let mut udata = vec![UDATA_COMMENT, (comment.len() + 1) as u8];
    udata.extend_from_slice(comment.as_bytes());
    udata.push(0);
    udata
}

/// The expressions of one rule in the shapes `render` writes for Service and endpoint
/// chains; `None` for anything else.
fn rule(text: &str) -> Option<Vec<Expr>> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [v @ ("jump" | "goto"), chain] => Some(vec![verdict(v, chain)?]),
        ["numgen", "random", "mod", n, "==", "0", v, chain] => {
            let modulus: u32 = n.parse().ok().filter(|n| *n > 0)?;
            Some(vec![
                Expr::Numgen { modulus },
                Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: vec![0; 4],
                },
                verdict(v, chain)?,
            ])
        }
        ["ip", "saddr", cidr, v, chain] if cidr.contains('/') => {
            let mut e = cidr_match(cidr, NFT_CMP_EQ)?;
            e.push(verdict(v, chain)?);
            Some(e)
        }
        ["ip", "saddr", ip, v, chain] if !ip.starts_with('@') => {
            let mut e = ip_match(12, ip, NFT_CMP_EQ)?;
            e.push(verdict(v, chain)?);
            Some(e)
        }
        ["fib", "saddr", "type", "local", v, chain] => Some(vec![
            Expr::FibSaddrType,
            Expr::Cmp {
                op: NFT_CMP_EQ,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
            verdict(v, chain)?,
        ]),
        ["meta", "l4proto", proto, "dnat", "to", target] => {
            let (ip, port) = target.split_once(':')?;
            let ip: Ipv4Addr = ip.parse().ok()?;
            let port: u16 = port.parse().ok()?;
            Some(vec![
                Expr::MetaL4proto,
                Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: vec![proto_number(proto)?],
                },
                Expr::Value {
                    reg: NFT_REG_1,
                    data: ip.octets().to_vec(),
                },
                Expr::Value {
                    reg: NFT_REG_2,
                    data: port.to_be_bytes().to_vec(),
                },
                Expr::Dnat,
            ])
        }
        ["ip", "daddr", ip, proto, "dport", port, "ip", "saddr", "!=", cidr, v, chain] => {
            let mut e = ip_match(16, ip, NFT_CMP_EQ)?;
            let port: u16 = port.parse().ok()?;
            e.extend([
                Expr::MetaL4proto,
                Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: vec![proto_number(proto)?],
                },
                Expr::Payload {
                    base: NFT_PAYLOAD_TRANSPORT_HEADER,
                    offset: 2,
                    len: 2,
                },
                Expr::Cmp {
                    op: NFT_CMP_EQ,
                    data: port.to_be_bytes().to_vec(),
                },
            ]);
            e.extend(cidr_match(cidr, NFT_CMP_NEQ)?);
            e.push(verdict(v, chain)?);
            Some(e)
        }
        _ => None,
    }
}

/// A whole transaction as one netlink batch, or `None` when any line is not one of the
/// shapes above. `seq` numbers the messages from `seq` on (the batch's begin); the count of
/// commands is returned with the bytes, the last one's (`seq + count`) is acknowledged.
pub(super) fn encode(table: &str, text: &str, seq: u32) -> Option<(Vec<u8>, u32)> {
    let mut out = Msg::new(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    )
    .finish();
    let mut n = 0u32;
    let mut last = 0;
    let ty = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
    for line in text.lines() {
        let mut words = line.splitn(6, ' ');
        let (verb, what, family, tbl) =
            (words.next()?, words.next()?, words.next()?, words.next()?);
        if family != "ip" || tbl != table {
            return None;
        }
        let name = words.next()?;
        let rest = words.next();
        n += 1;
        if n > MAX_COMMANDS {
            return None;
        }
        let s = seq + n;
        let msg = match (verb, what, rest) {
            ("add", "chain", None) => {
                let mut m = Msg::new(
                    ty(NFT_MSG_NEWCHAIN),
                    NLM_F_REQUEST | NLM_F_CREATE,
                    s,
                    NFPROTO_IPV4,
                    0,
                );
                m.str(NFTA_CHAIN_TABLE, table);
                m.str(NFTA_CHAIN_NAME, name);
                m
            }
            ("delete", "chain", None) => {
                let mut m = Msg::new(ty(NFT_MSG_DELCHAIN), NLM_F_REQUEST, s, NFPROTO_IPV4, 0);
                m.str(NFTA_CHAIN_TABLE, table);
                m.str(NFTA_CHAIN_NAME, name);
                m
            }
            ("flush", "chain", None) => {
                let mut m = Msg::new(ty(NFT_MSG_DELRULE), NLM_F_REQUEST, s, NFPROTO_IPV4, 0);
                m.str(NFTA_RULE_TABLE, table);
                m.str(NFTA_RULE_CHAIN, name);
                m
            }
            ("add", "rule", Some(text)) => {
                let (exprs, comment) = commented_rule(text)?;
                let mut m = Msg::new(
                    ty(NFT_MSG_NEWRULE),
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND,
                    s,
                    NFPROTO_IPV4,
                    0,
                );
                m.str(NFTA_RULE_TABLE, table);
                m.str(NFTA_RULE_CHAIN, name);
                let list = m.begin(NFTA_RULE_EXPRESSIONS);
                for e in &exprs {
                    e.write(&mut m);
                }
                m.end(list);
                if let Some(comment) = comment {
                    m.attr(NFTA_RULE_USERDATA, &udata_comment(comment));
                }
                m
            }
            (verb @ ("add" | "delete"), "element", Some(text)) => {
                let elem = element(text, verb == "delete")?;
                let (msg, flags) = match verb {
                    "add" => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
                    _ => (NFT_MSG_DELSETELEM, NLM_F_REQUEST),
                };
                let mut m = Msg::new(ty(msg), flags, s, NFPROTO_IPV4, 0);
                m.str(NFTA_SET_ELEM_LIST_TABLE, table);
                m.str(NFTA_SET_ELEM_LIST_SET, name);
                elem.write(&mut m);
                m
            }
            _ => return None,
        };
        last = out.len();
        out.extend(msg.finish());
    }
    if n == 0 {
        return None;
    }
    // Only the last command asks for an acknowledgement: the kernel processes the batch
    // inside our send, then queues an error for each command that failed and this one
    // acknowledgement. Acknowledging every command would overflow the socket's receive
    // buffer (about 200 replies) on a partial sync of a few dozen Services.
    let flags = u16::from_ne_bytes([out[last + 6], out[last + 7]]) | NLM_F_ACK;
    out[last + 6..last + 8].copy_from_slice(&flags.to_ne_bytes());
    out.extend(
        Msg::new(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq + n + 1,
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish(),
    );
    Some((out, n))
}

/// The acknowledgements in one datagram from the kernel: (sequence number, errno), errno
/// 0 for success.
pub(super) fn acks(datagram: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= datagram.len() {
        let word = |i: usize| u32::from_ne_bytes(datagram[i..i + 4].try_into().unwrap());
        let len = word(at) as usize;
        let ty = u16::from_ne_bytes([datagram[at + 4], datagram[at + 5]]);
        let seq = word(at + 8);
        if len < 16 || at + len > datagram.len() {
            break;
        }
        if ty == NLMSG_ERROR && len >= 20 {
            out.push((seq, -(word(at + 16) as i32)));
        }
        at += (len + 3) & !3;
    }
    out
}

#[cfg(test)]
#[path = "nfnl_tests.rs"]
mod tests;
