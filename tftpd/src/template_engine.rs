//! Per-machine generated content: text templates rendered with the client's address and the
//! requested path (GRUB, iPXE or pxelinux configurations without one file per machine).
//!
//! Variables are written `{{name}}`:
//!
//! | variable | value |
//! |---|---|
//! | `{{ip}}` | the client's IP address (IPv4-mapped IPv6 shown as IPv4) |
//! | `{{ip_hex}}` | IPv4 as 8 upper-case hex digits, as pxelinux names its config files (`C0A80A05`) |
//! | `{{port}}` | the client's UDP port |
//! | `{{path}}` | the requested file name |
//! | `{{server_ip}}` | the server address the request arrived on |
//!
//! Unknown variables are left as they are, so templates may contain other `{{...}}` syntax.
//!
//! ```
//! use tftpd::template_engine::{Vars, render};
//!
//! let vars = Vars::new("192.168.10.5:2070".parse().unwrap(), "10.0.0.1:69".parse().unwrap(), "grub.cfg");
//! let out = render("set net_ip={{ip}} # {{ip_hex}} {{path}} {{other}}", &vars);
//! assert_eq!(out, "set net_ip=192.168.10.5 # C0A80A05 grub.cfg {{other}}");
//! ```

use std::net::{IpAddr, SocketAddr};

/// The values a template can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    ip: IpAddr,
    port: u16,
    server_ip: IpAddr,
    path: String,
}

impl Vars {
    /// Values for a request from `peer`, received on `local`, for `path`.
    pub fn new(peer: SocketAddr, local: SocketAddr, path: &str) -> Self {
        Vars {
            ip: peer.ip().to_canonical(),
            port: peer.port(),
            server_ip: local.ip().to_canonical(),
            path: path.to_string(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "ip" => self.ip.to_string(),
            "ip_hex" => match self.ip {
                IpAddr::V4(v4) => v4.octets().iter().map(|b| format!("{b:02X}")).collect(),
                IpAddr::V6(v6) => v6.octets().iter().map(|b| format!("{b:02X}")).collect(),
            },
            "port" => self.port.to_string(),
            "path" => self.path.clone(),
            "server_ip" => self.server_ip.to_string(),
            _ => return None,
        })
    }
}

/// Render `template` with `vars`.
pub fn render(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.get(name) {
                    Some(value) => out.push_str(&value),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_leaves_unknowns_alone() {
        let vars = Vars::new(
            "[::ffff:10.1.2.3]:1000".parse().unwrap(),
            "[::]:69".parse().unwrap(),
            "a/b",
        );
        assert_eq!(
            render("{{ ip }}-{{ip_hex}}-{{port}}-{{path}}-{{server_ip}}", &vars),
            "10.1.2.3-0A010203-1000-a/b-::"
        );
        assert_eq!(render("{{nope}} {{ip", &vars), "{{nope}} {{ip");
        assert_eq!(render("no vars", &vars), "no vars");
        assert_eq!(render("", &vars), "");
    }
}
