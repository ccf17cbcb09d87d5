//! Reaching mailgrant's loopback listener as a browser does: one HTTP GET over real TCP, and
//! waiting for the listener's ports to be given back after a sign-in ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// One `GET target` with `Host: host`, as a browser following a redirect sends it; returns the
/// status and the whole answer (head and page).
pub fn browser_get(address: SocketAddr, target: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the loopback listener");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(stream, "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status =
        response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, response)
}

/// [`browser_get`] with `Host: localhost`, the registered redirect's host.
pub fn get(address: SocketAddr, target: &str) -> (u16, String) {
    browser_get(address, target, "localhost")
}

/// True once `address` can be bound again: the listener's sockets close on helper threads
/// right after the wait ends, so this gives them up to 5 s.
pub fn port_released(address: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpListener::bind(address).is_ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
