//! Any bytes decode or give a typed error; whatever decodes re-encodes to an equal packet
//! (decode → encode → decode oracle).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftp_proto::packet::Packet;
use tftp_proto::server::IncomingRequest;
use tftp_proto::testing::CLIENT_ADDR;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::decode(data) {
        let mut buf = vec![0u8; packet.encoded_len()];
        let n = packet.encode(&mut buf).expect("a decoded packet encodes");
        assert_eq!(n, buf.len());
        assert_eq!(Packet::decode(&buf).expect("re-encoded packet decodes"), packet);
        // Short buffers are refused with the needed length, never a panic.
        if n > 0 {
            assert!(packet.encode(&mut buf[..n - 1]).is_err());
        }
    }
    if let Err(e) = IncomingRequest::parse(CLIENT_ADDR, data)
        && let Some(reply) = e.reply()
    {
        let mut buf = [0u8; 512];
        let n = reply.encode(&mut buf);
        assert!(Packet::decode(&buf[..n]).is_ok());
    }
});
