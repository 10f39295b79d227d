//! The handlers `tftpd` composes, in a server of one's own: per-machine templates (tftpd's)
//! in front of a directory (the framework's, re-exported by tftp-tokio).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tftp_tokio::{
    Client, ClientError, DirHandler, ErrorCode, Fallback, Mode, OptionValues, RootOptions, Server,
    ServerOptions, TransferError,
};
use tftpd::Templates;

#[tokio::test]
async fn templates_then_a_directory() {
    let templates = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("boot.ipxe"),
        "#!ipxe\necho {{ip}} asked {{path}}\n",
    )
    .unwrap();
    std::fs::write(root.path().join("boot.ipxe"), "shadowed").unwrap();
    std::fs::write(root.path().join("kernel"), vec![7u8; 70_000]).unwrap();
    let handler = Fallback::new(
        Templates::new(templates.path(), false).unwrap(),
        DirHandler::new(root.path(), RootOptions::default()).unwrap(),
    );
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    tokio::spawn(server.serve());

    let get = |name: &'static str| async move {
        let mut out = Vec::new();
        Client::new()
            .get(addr, name, Mode::Octet, OptionValues::default(), &mut out)
            .await
            .map(|_| out)
    };
    assert_eq!(
        get("boot.ipxe").await.unwrap(),
        b"#!ipxe\necho 127.0.0.1 asked boot.ipxe\n"
    );
    assert_eq!(get("kernel").await.unwrap(), vec![7u8; 70_000]);
    match get("missing").await {
        Err(ClientError::Transfer(TransferError::Peer { code, .. })) => {
            assert_eq!(code, ErrorCode::FILE_NOT_FOUND)
        }
        other => panic!("{other:?}"),
    }
}
