//! tftpd's per-packet code is laid out together (`tftp-blocking/hot-text.ld`, passed to the
//! linker by `tftpd/build.rs`): the functions every DATA runs through sit in the binary's
//! `.text.tftp_hot` section. The script names them by parts of their mangled names, so a
//! renamed or moved function would drop out of it silently; this test names them by their
//! Rust paths and fails when one of them is linked outside the section.

// Built only where tftpd/build.rs passes the script to the linker (it sets the cfg then).
#![cfg(tftp_hot_text)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// The per-packet path of a lock-step download (callgrind, blksize 1468: each of these runs
/// once a packet or more), as `nm --demangle` spells them. An entry that the compiler inlined
/// everywhere has no symbol of its own and is skipped; the first two never are.
const PER_PACKET: &[&str] = &[
    "tftp_blocking::event_loop::Loop<H>::drain",
    "tftp_proto::session::Session<R,I,B>::poll_output",
    "tftp_proto::session::Session<R,I,B>::handle_datagram",
    "tftp_blocking::event_loop::Loop<H>::run",
    "tftp_blocking::event_loop::Loop<H>::serve",
    "tftp_blocking::event_loop::send_one",
    "tftp_blocking::event_loop::send",
    "tftp_blocking::event_loop::recv",
    "tftp_blocking::data::Data::fill",
    "tftp_blocking::reactor::Poller::wait",
    "tftp_proto::session::Fill::advance",
    "tftp_proto::sender::Sender<I,B>::complete_block",
    "tftp_proto::sender::Sender<I,B>::release_ring",
    "tftp_proto::packet::Packet::decode",
    "tftp_proto::timer::Rto::sample",
    "tftp_server::file::Seekable::read_at",
    "<tftp_server::file::FileSource as std::io::Read>::read",
    "<tftp_server::ring::SpareRing as tftp_proto::storage::Storage>::release",
    "tftp_server::stats::Progress::due",
    "tftp_blocking::slab::Slab<T>::get",
];

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (binutils) is needed to read tftpd's layout: {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_per_packet_functions_are_in_the_hot_section() {
    let bin = env!("CARGO_BIN_EXE_tftpd");
    // [Nr] Name Type Address Off Size ...
    let sections = run("readelf", &["-S", "-W", bin]);
    let hot = sections
        .lines()
        .find_map(|l| {
            let l = l.split(']').nth(1)?;
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&".text.tftp_hot")).then(|| {
                let start = u64::from_str_radix(f[2], 16).unwrap();
                let size = u64::from_str_radix(f[4], 16).unwrap();
                start..start + size
            })
        })
        .expect("tftpd has a .text.tftp_hot section (tftp-blocking/hot-text.ld)");
    let symbols = run("nm", &["--demangle", "--defined-only", bin]);
    let mut outside = Vec::new();
    for name in PER_PACKET {
        let found: Vec<u64> = symbols
            .lines()
            .filter_map(|l| {
                let (addr, rest) = l.split_once(' ')?;
                let (kind, sym) = rest.split_once(' ')?;
                let kind_is_text = kind.eq_ignore_ascii_case("t");
                // Legacy mangling demangles with a ::h<hash> suffix, which --demangle drops.
                (kind_is_text && sym == *name).then(|| u64::from_str_radix(addr, 16).ok())?
            })
            .collect();
        if found.is_empty() {
            assert!(
                !name.ends_with("::drain") && !name.ends_with("::poll_output"),
                "{name} has no symbol in tftpd"
            );
            continue;
        }
        for addr in found {
            if !hot.contains(&addr) {
                outside.push(format!("{name} at {addr:#x}"));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "per-packet functions outside .text.tftp_hot ({:#x}..{:#x}): {outside:#?}; \
         add a pattern for them to tftp-blocking/hot-text.ld",
        hot.start,
        hot.end
    );
}
