//! A hand-driven TFTP peer on a plain UDP socket, for scenarios no well-behaved client plays:
//! strays, vanishing clients, size probes, slow readers.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tftp_proto::ErrorCode;
use tftp_proto::packet::{Mode, Options, Packet, Request};

/// A UDP socket on 127.0.0.1 (or ::1) with a receive timeout.
#[derive(Debug)]
pub struct Peer {
    /// The socket.
    pub socket: UdpSocket,
}

impl Peer {
    /// A peer on the loopback address of `server`'s family.
    pub fn new(server: SocketAddr) -> Self {
        let local = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let socket = UdpSocket::bind(local).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Peer { socket }
    }

    /// Send raw bytes.
    pub fn send(&self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).unwrap();
    }

    /// Send a read request with options.
    pub fn rrq(&self, to: SocketAddr, file: &str, options: &[(&str, &str)]) {
        let packet = Packet::Rrq(Request {
            filename: file,
            mode: Mode::Octet,
            options: Options::from_pairs(options),
        });
        self.send(to, &encode(&packet));
    }

    /// Send ACK `block`.
    pub fn ack(&self, to: SocketAddr, block: u16) {
        self.send(to, &encode(&Packet::Ack { block }));
    }

    /// Send an ERROR.
    pub fn error(&self, to: SocketAddr, code: ErrorCode, message: &str) {
        self.send(to, &encode(&Packet::Error { code, message }));
    }

    /// The next datagram, or `None` after the timeout.
    pub fn try_recv(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        let (n, from) = self.socket.recv_from(&mut buf).ok()?;
        buf.truncate(n);
        Some((buf, from))
    }

    /// The next datagram; panics after the timeout.
    pub fn recv(&self) -> (Vec<u8>, SocketAddr) {
        self.try_recv().expect("no answer within 5 s")
    }

    /// Set the receive timeout.
    pub fn timeout(&self, t: Duration) {
        self.socket.set_read_timeout(Some(t)).unwrap();
    }
}

/// Encode a packet into a new buffer.
pub fn encode(packet: &Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; packet.encoded_len()];
    let n = packet.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Decode or panic.
pub fn decode(bytes: &[u8]) -> Packet<'_> {
    Packet::decode(bytes).unwrap()
}
