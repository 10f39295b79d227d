//! The per-machine example serves each client its own configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/per_machine.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::collections::HashMap;
use std::net::IpAddr;

use tftp_tokio::{Client, ClientError, ErrorCode, Mode, OptionValues, Server, ServerOptions};

#[tokio::test]
async fn each_machine_gets_its_own_configuration() {
    let roles = HashMap::from([(IpAddr::from([127, 0, 0, 1]), "web")]);
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(example::PerMachine::new(roles.clone()), options).unwrap();
    let v4 = server.local_addrs().unwrap()[0];
    tokio::spawn(server.serve());
    let options = ServerOptions::new().listen("[::1]:0".parse().unwrap());
    let server6 = Server::bind(example::PerMachine::new(roles), options).unwrap();
    let v6 = server6.local_addrs().unwrap()[0];
    tokio::spawn(server6.serve());

    let mut grub = Vec::new();
    Client::new()
        .get(
            v4,
            "grub.cfg",
            Mode::Octet,
            OptionValues::default(),
            &mut grub,
        )
        .await
        .unwrap();
    let grub = String::from_utf8(grub).unwrap();
    assert!(
        grub.contains("Install web (127.0.0.1)") && grub.contains("/images/web/vmlinuz"),
        "{grub}"
    );

    // Another machine (here: the IPv6 loopback) is not in the inventory: rescue.
    let mut ipxe = Vec::new();
    Client::new()
        .get(
            v6,
            "boot.ipxe",
            Mode::Octet,
            OptionValues::default(),
            &mut ipxe,
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(ipxe).unwrap(),
        "#!ipxe\necho Booting rescue on ::1\nchain tftp://${next-server}/grub.cfg\n"
    );

    let e = Client::new()
        .get(
            v4,
            "kernel",
            Mode::Octet,
            OptionValues::default(),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ClientError::Transfer(tftp_tokio::tftp_proto::TransferError::Peer {
            code: ErrorCode::FILE_NOT_FOUND,
            ..
        })
    ));
}
