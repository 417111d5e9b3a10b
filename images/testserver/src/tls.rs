//! `testserver tls-hello HOST:PORT`: proves a TLS server answers at an address (the API
//! server at `kubernetes.default.svc:443` from a pod) without a TLS library: it sends one
//! fixed TLS 1.3 ClientHello and reports the type and version of the first record back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends the hello to `addr`; prints `handshake <major>.<minor>` (a ServerHello came back,
/// exit 0) or `alert ...`/the error (exit 1).
pub(crate) fn hello(addr: &str) -> i32 {
    match first_record(addr) {
        Ok((22, version)) => {
            println!("handshake {}.{}", version[0], version[1]);
            0
        }
        Ok((21, version)) => {
            eprintln!("alert {}.{}", version[0], version[1]);
            1
        }
        Ok((kind, _)) => {
            eprintln!("record type {kind}, not a TLS handshake");
            1
        }
        Err(e) => {
            eprintln!("testserver tls-hello {addr}: {e}");
            1
        }
    }
}

fn first_record(addr: &str) -> std::io::Result<(u8, [u8; 2])> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&client_hello())?;
    let mut head = [0u8; 5];
    stream.read_exact(&mut head)?;
    Ok((head[0], [head[1], head[2]]))
}

/// A TLS 1.3 ClientHello offering TLS_AES_128_GCM_SHA256 and
/// TLS_ECDHE_ECDSA/RSA_WITH_AES_128_GCM_SHA256 with an X25519 key share (the curve's base
/// point: a valid public key; the handshake is never finished).
fn client_hello() -> Vec<u8> {
    let mut ext = Vec::new();
    let mut extension = |kind: u16, body: &[u8]| {
        ext.extend_from_slice(&kind.to_be_bytes());
        ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
        ext.extend_from_slice(body);
    };
    extension(0x002b, &[2, 0x03, 0x04]); // supported_versions: TLS 1.3
    extension(0x000a, &[0, 2, 0x00, 0x1d]); // supported_groups: x25519
    extension(0x000d, &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]); // signature_algorithms
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32, 9];
    share.extend_from_slice(&[0; 31]);
    extension(0x0033, &share); // key_share: x25519
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend((0..32u8).map(|i| i.wrapping_mul(37))); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![1, 0, 0, 0]; // ClientHello, 24-bit length
    handshake[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_one_well_framed_handshake_record() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[22, 3, 1], "a handshake record");
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5, "record length");
        assert_eq!(hello[5], 1, "ClientHello");
        let body_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(body_len, hello.len() - 9, "handshake length");
    }
}
