//! A server that generates each machine's boot configuration on the fly, fbtftp-style: a GRUB
//! configuration and an iPXE script rendered per client from a template keyed by the client's
//! address, with everything else refused.
//!
//! ```sh
//! cargo run -p tftp-tokio --example per_machine -- 127.0.0.1:6969
//! curl tftp://127.0.0.1:6969/grub.cfg
//! ```

use std::collections::HashMap;
use std::net::IpAddr;

use tftp_tokio::{Handler, HandlerError, ReadResponse, Request, Server, ServerOptions};

const GRUB: &str = "\
set timeout=3
menuentry 'Install {role} ({ip})' {
    linux /images/{role}/vmlinuz ip={ip} role={role} console=ttyS0
    initrd /images/{role}/initrd.img
}
";

const IPXE: &str = "#!ipxe\necho Booting {role} on {ip}\nchain tftp://${next-server}/grub.cfg\n";

/// Renders per-machine boot files; machines not in the inventory get the `rescue` role.
#[derive(Debug)]
pub struct PerMachine {
    roles: HashMap<IpAddr, &'static str>,
}

impl PerMachine {
    /// A handler with a small inventory.
    pub fn new(roles: HashMap<IpAddr, &'static str>) -> Self {
        PerMachine { roles }
    }
}

impl Handler for PerMachine {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let ip = request.peer.ip().to_canonical();
        let role = self.roles.get(&ip).copied().unwrap_or("rescue");
        let template = match request.filename.trim_start_matches('/') {
            "grub.cfg" | "grub/grub.cfg" => GRUB,
            "boot.ipxe" => IPXE,
            _ => return Err(HandlerError::not_found()),
        };
        let text = template
            .replace("{role}", role)
            .replace("{ip}", &ip.to_string());
        Ok(ReadResponse::from_bytes(text.into_bytes()))
    }
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6969".into());
    let listen = listen.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: per_machine ADDR:PORT",
        )
    })?;
    let roles = HashMap::from([(IpAddr::from([127, 0, 0, 1]), "web")]);
    let options = ServerOptions::new()
        .listen(listen)
        .on_session(|r| println!("{} {} -> {:?}", r.peer, r.filename, r.stats.outcome))
        .on_stats(|s| println!("{} sessions, {} bytes", s.sessions_started, s.bytes_sent));
    println!("serving per-machine configurations on {listen}");
    Server::bind(PerMachine::new(roles), options)?.serve().await
}
