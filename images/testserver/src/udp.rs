//! The test server's UDP side: an echo server (what a UDP Service's endpoints run) and a
//! one-datagram client (what a test runs inside a network namespace to reach one).

use std::net::UdpSocket;
use std::time::Duration;

/// `testserver udp-echo PORT`: answers every datagram with its own bytes, to its sender;
/// returns only when it cannot bind.
pub(crate) fn echo_server(port: &str) -> i32 {
    let socket = match UdpSocket::bind(format!("0.0.0.0:{port}")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testserver: cannot bind UDP port {port}: {e}");
            return 1;
        }
    };
    println!("testserver echoing UDP on 0.0.0.0:{port}");
    serve(&socket);
    0
}

/// Echoes datagrams on `socket` until reading fails.
fn serve(socket: &UdpSocket) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    eprintln!("testserver: udp reply to {from}: {e}");
                }
            }
            Err(e) => {
                eprintln!("testserver: udp: {e}");
                return;
            }
        }
    }
}

/// `testserver udp HOST:PORT MSG`: one datagram out, its answer to stdout, exit 0. A
/// connected socket sees the ICMP error an unreachable port or host sends (exit 1 at once),
/// and a silent peer is given 5 s.
pub(crate) fn send(addr: &str, msg: &str) -> i32 {
    match exchange(addr, msg.as_bytes(), Duration::from_secs(5)) {
        Ok(answer) => {
            println!("{}", String::from_utf8_lossy(&answer));
            0
        }
        Err(e) => {
            eprintln!("testserver udp {addr}: {e}");
            1
        }
    }
}

fn exchange(addr: &str, msg: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(wait))?;
    socket.send(msg)?;
    let mut buf = vec![0u8; 65_535];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_echo_answers_each_datagram_with_its_bytes() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        std::thread::spawn(move || serve(&socket));
        for msg in ["one", "two and more"] {
            let answer = exchange(&addr, msg.as_bytes(), Duration::from_secs(5)).unwrap();
            assert_eq!(answer, msg.as_bytes(), "{msg}");
        }
    }

    #[test]
    fn a_closed_udp_port_is_an_error_not_a_timeout() {
        // Bound and dropped: nobody listens there now, so the kernel answers with ICMP
        // port unreachable, which a connected socket reports as ECONNREFUSED.
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let err = exchange(&addr, b"anyone?", Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
}
