//! `testserver fake-dns PORT NAME=IPV4...`: the fake upstream resolver of the service tests.
//! Over UDP it answers A questions for the names it was given (TTL 30), NODATA for their
//! other types and NXDOMAIN for every other name, and prints each question (`name type`)
//! on stdout, so a test can show which names reached the upstream.

use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};

/// Serves until the socket fails; 1 when it cannot bind or the records do not parse.
pub(crate) fn fake_upstream(port: &str, records: &[String]) -> i32 {
    let mut table = Vec::new();
    for record in records {
        match record
            .split_once('=')
            .map(|(n, ip)| (n, ip.parse::<Ipv4Addr>()))
        {
            Some((name, Ok(ip))) => table.push((name.trim_end_matches('.').to_lowercase(), ip)),
            _ => {
                eprintln!("testserver fake-dns: {record:?} is not NAME=IPV4");
                return 2;
            }
        }
    }
    let socket = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testserver fake-dns: cannot bind UDP port {port}: {e}");
            return 1;
        }
    };
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            return 1;
        };
        let Some((name, qtype, end)) = question(&buf[..n]) else {
            continue;
        };
        println!("{name} {qtype}");
        let _ = std::io::stdout().flush();
        let reply = answer(&buf[..n], end, &name, qtype, &table);
        let _ = socket.send_to(&reply, from);
    }
}

/// The first question of a query: its lower-cased name (no trailing dot), its type, and
/// where the question ends.
fn question(query: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

/// The reply: the query's id and question, RD echoed, RA set; one A record when the name
/// is known and A was asked, none (NODATA) for other types, NXDOMAIN for unknown names.
fn answer(
    query: &[u8],
    question_end: usize,
    name: &str,
    qtype: u16,
    table: &[(String, Ipv4Addr)],
) -> Vec<u8> {
    let known = table.iter().find(|(n, _)| n == name).map(|(_, ip)| *ip);
    let rcode = if known.is_some() { 0 } else { 3 };
    let record = known.filter(|_| qtype == 1);
    let flags = 0x8080 | (u16::from_be_bytes([query[2], query[3]]) & 0x0100) | rcode;
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    if let Some(ip) = record {
        // The name as a pointer to the question's (offset 12), type A, class IN, TTL 30.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype` with id 0x1234 and RD set.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn the_fake_upstream_answers_known_names_and_denies_the_rest() {
        let table = vec![("outside.test".to_string(), Ipv4Addr::new(192, 0, 2, 80))];
        let cases = [
            ("known A", "Outside.TEST", 1u16, 0u8, 1u8),
            ("known AAAA is NODATA", "outside.test", 28, 0, 0),
            (
                "unknown is NXDOMAIN",
                "web.default.svc.cluster.local",
                1,
                3,
                0,
            ),
        ];
        for (case, name, qtype, rcode, answers) in cases {
            let q = query(name, qtype);
            let (asked, t, end) = question(&q).unwrap();
            assert_eq!(
                (asked.as_str(), t),
                (name.to_lowercase().as_str(), qtype),
                "{case}"
            );
            let reply = answer(&q, end, &asked, t, &table);
            assert_eq!(&reply[..2], &[0x12, 0x34], "{case}: id");
            assert_eq!(reply[2] & 0x81, 0x81, "{case}: QR and RD");
            assert_eq!(reply[3] & 0x0f, rcode, "{case}: rcode");
            assert_eq!(reply[7], answers, "{case}: answers");
            if answers == 1 {
                assert_eq!(&reply[reply.len() - 4..], &[192, 0, 2, 80], "{case}");
            }
        }
    }
}
