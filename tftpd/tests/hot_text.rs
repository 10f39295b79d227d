//! tftpd's code is laid out by what runs how often. The per-packet code
//! (`tftp-blocking/hot-text.ld`, passed to the linker by `tftpd/build.rs`): the functions
//! every DATA runs through sit in the binary's `.text.tftp_hot` section. The rest of what a
//! serving tftpd runs (`tftpd/warm-text.ld`): in `.text.tftp_warm`, right after. The scripts
//! name functions by parts of their mangled names, so a renamed or moved function would drop
//! out of them silently; these tests name some by their Rust paths and fail when one of them
//! is linked outside its section.

// Built only where tftpd/build.rs passes the script to the linker (it sets the cfg then).
#![cfg(tftp_hot_text)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/elf.rs"]
mod elf;

use elf::{run, section};

/// The per-packet path of a lock-step download (callgrind, blksize 1468: each of these runs
/// once a packet or more), by their paths without generic arguments ([`path_of`]). An entry
/// that the compiler inlined everywhere has no symbol of its own and is skipped; the first two
/// never are.
const PER_PACKET: &[&str] = &[
    "tftp_blocking::event_loop::Loop::drain",
    "tftp_proto::session::Session::poll_output",
    "tftp_proto::session::Session::handle_datagram",
    "tftp_blocking::event_loop::Loop::run",
    "tftp_blocking::event_loop::Loop::serve",
    "tftp_blocking::event_loop::send_one",
    "tftp_blocking::event_loop::send",
    "tftp_blocking::event_loop::recv",
    "tftp_blocking::data::Data::fill",
    "tftp_blocking::reactor::Poller::wait",
    "tftp_proto::session::Fill::advance",
    "tftp_proto::sender::Sender::complete_block",
    "tftp_proto::sender::Sender::release_ring",
    "tftp_proto::packet::Packet::decode",
    "tftp_proto::timer::Rto::sample",
    "tftp_server::file::Seekable::read_at",
    "<tftp_server::file::FileSource as std::io::Read>::read",
    "<tftp_server::ring::SpareRing as tftp_proto::storage::Storage>::release",
    "tftp_server::stats::Progress::due",
    "tftp_blocking::slab::Slab::get",
];

/// A demangled function name without its generic arguments, crate disambiguators and the
/// brackets v0 puts around an inherent impl's type, so that both manglings give the same
/// path: legacy `tftp_proto::session::Session<R,I,B>::poll_output` and v0
/// `<tftp_proto::session::Session<tftp_proto::server::Server, std::time::Instant, ..>>::
/// poll_output` are both `tftp_proto::session::Session::poll_output`; a trait impl stays
/// `<tftp_server::file::FileSource as std::io::Read>::read`.
fn path_of(demangled: &str) -> String {
    let after_name = |out: &str| out.ends_with(|p: char| p.is_alphanumeric() || p == '_');
    let mut out = String::with_capacity(demangled.len());
    // Whether each open `<` opens generic arguments (after a name, or inside others): the
    // innermost one says whether the characters are skipped.
    let mut opened: Vec<bool> = Vec::new();
    let mut disambiguator = false;
    for c in demangled.chars() {
        let in_generics = opened.last() == Some(&true);
        match c {
            '<' => {
                let generic = in_generics || after_name(&out);
                opened.push(generic);
                if !generic {
                    out.push(c);
                }
            }
            '>' => {
                if opened.pop() != Some(true) {
                    out.push(c);
                }
            }
            // `std[e28293b1aa0f68bd]::`: after a name (a slice type, `[u8]`, is not).
            '[' if !in_generics && after_name(&out) => disambiguator = true,
            ']' if disambiguator => disambiguator = false,
            _ if in_generics || disambiguator => {}
            _ => out.push(c),
        }
    }
    match out
        .strip_prefix('<')
        .and_then(|rest| rest.split_once(">::"))
    {
        Some((ty, method)) if !ty.contains(" as ") => format!("{ty}::{method}"),
        _ => out,
    }
}

/// Where each of `names` (paths as [`path_of`] spells them) is linked in `bin`, and the names
/// that have no symbol (inlined everywhere).
fn addresses<'n>(bin: &str, names: &[&'n str]) -> (Vec<(&'n str, u64)>, Vec<&'n str>) {
    // Each function symbol's path (once: a debug build has ~100,000) and address.
    let symbols: Vec<(String, u64)> = run("nm", &["--demangle", "--defined-only", bin])
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.split_once(' ')?;
            let (kind, sym) = rest.split_once(' ')?;
            // Legacy mangling demangles with a ::h<hash> suffix, which --demangle drops.
            kind.eq_ignore_ascii_case("t")
                .then(|| Some((path_of(sym), u64::from_str_radix(addr, 16).ok()?)))?
        })
        .collect();
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for name in names {
        let at: Vec<u64> = symbols
            .iter()
            .filter(|(path, _)| path == name)
            .map(|&(_, addr)| addr)
            .collect();
        if at.is_empty() {
            missing.push(*name);
        }
        found.extend(at.into_iter().map(|a| (*name, a)));
    }
    (found, missing)
}

/// The functions of `found` linked outside `section`, with their addresses.
fn outside(found: &[(&str, u64)], section: &std::ops::Range<u64>) -> Vec<String> {
    found
        .iter()
        .filter(|(_, addr)| !section.contains(addr))
        .map(|(name, addr)| format!("{name} at {addr:#x}"))
        .collect()
}

#[test]
fn the_per_packet_functions_are_in_the_hot_section() {
    let bin = env!("CARGO_BIN_EXE_tftpd");
    let hot = section(bin, ".text.tftp_hot")
        .expect("tftpd has a .text.tftp_hot section (tftp-blocking/hot-text.ld)");
    let (found, missing) = addresses(bin, PER_PACKET);
    for name in missing {
        assert!(
            !name.ends_with("::drain") && !name.ends_with("::poll_output"),
            "{name} has no symbol in tftpd"
        );
    }
    let outside = outside(&found, &hot);
    assert!(
        outside.is_empty(),
        "per-packet functions outside .text.tftp_hot ({:#x}..{:#x}): {outside:#?}; \
         add a pattern for them to tftp-blocking/hot-text.ld",
        hot.start,
        hot.end
    );
}

/// Functions tftpd runs only as it starts: its arguments, its runtime. None is inlined.
const START_UP: &[&str] = &[
    "tftpd::load_args",
    "clap_builder::parser::parser::Parser::get_matches_with",
    "tokio::runtime::builder::Builder::build",
];

/// Functions a serving tftpd runs once or now and then rather than once a packet: on each
/// request, at each transfer's end. None is inlined.
const SERVING: &[&str] = &[
    "tftp_server::server::ServerCore::on_datagram",
    "tftp_server::server::ServerCore::finish",
    "tftp_blocking::event_loop::Loop::on_listener_received",
    // Each log line and session-log line goes through these (--session-log, as run.sh runs).
    "<&tftpd::line_queue::LineQueue as std::io::Write>::write",
    "tftpd::session_log::BackgroundLog::record",
];

#[test]
fn what_a_serving_tftpd_runs_is_laid_out_after_the_hot_section() {
    // tftpd/warm-text.ld (generated by benches/e2e/warm-text.sh, which says why): without
    // it, or when its patterns no longer match what the compiler names these functions,
    // they are scattered over .text and tftpd's resident code doubles.
    let bin = env!("CARGO_BIN_EXE_tftpd");
    let warm = section(bin, ".text.tftp_warm")
        .expect("tftpd has a .text.tftp_warm section (tftpd/warm-text.ld)");
    let hot = section(bin, ".text.tftp_hot").expect("and a .text.tftp_hot section");
    assert!(
        (hot.end..hot.end + 64).contains(&warm.start),
        "the warm section ({:#x}) starts right after the hot one (ends {:#x})",
        warm.start,
        hot.end
    );
    let all = [&["tftpd::main"], START_UP, SERVING].concat();
    let (found, missing) = addresses(bin, &all);
    assert!(missing.is_empty(), "no symbol in tftpd for {missing:?}");
    let outside = outside(&found, &warm);
    assert!(
        outside.is_empty(),
        "functions outside .text.tftp_warm ({:#x}..{:#x}): {outside:#?}; regenerate \
         tftpd/warm-text.ld with benches/e2e/warm-text.sh (or, if the build had RUSTFLAGS set, \
         add -Csymbol-mangling-version=v0 to them: the script names v0 symbols)",
        warm.start,
        warm.end
    );
}

#[test]
fn what_only_start_up_runs_comes_after_what_serving_runs() {
    // tftpd gives its code's pages back once it serves (`start_up_pages` in
    // src/bin/tftpd.rs), and serving maps back the 64 KiB windows of what it runs: with
    // start-up's functions among serving's (the layout's order before), those were every
    // window of the warm section, 0.25 MB more resident than serving's own.
    let bin = env!("CARGO_BIN_EXE_tftpd");
    let (serving, missing) = addresses(bin, SERVING);
    assert!(missing.is_empty(), "no symbol in tftpd for {missing:?}");
    let (start_up, missing) = addresses(bin, START_UP);
    assert!(missing.is_empty(), "no symbol in tftpd for {missing:?}");
    let last_serving = serving.iter().max_by_key(|(_, a)| *a).expect("found");
    let first_start_up = start_up.iter().min_by_key(|(_, a)| *a).expect("found");
    assert!(
        last_serving.1 < first_start_up.1,
        "{} ({:#x}) is laid out after {} ({:#x}): regenerate tftpd/warm-text.ld with \
         benches/e2e/warm-text.sh, which puts what serving runs first",
        last_serving.0,
        last_serving.1,
        first_start_up.0,
        first_start_up.1
    );
}

#[test]
fn both_manglings_give_one_path() {
    for (demangled, path) in [
        (
            "tftp_proto::session::Session<R,I,B>::poll_output",
            "tftp_proto::session::Session::poll_output",
        ),
        (
            "<tftp_proto::session::Session<tftp_proto::server::Server, std::time::Instant, \
             tftp_server::ring::SpareRing>>::poll_output",
            "tftp_proto::session::Session::poll_output",
        ),
        (
            "<tftp_blocking::event_loop::Loop<tftpd::engine::OnLoops<tftpd::access::Access<\
             core::option::Option<u8>>>>>::drain",
            "tftp_blocking::event_loop::Loop::drain",
        ),
        (
            "<tftp_server::file::FileSource as std::io::Read>::read",
            "<tftp_server::file::FileSource as std::io::Read>::read",
        ),
        (
            "<&tftpd::line_queue::LineQueue as std::io::Write>::write",
            "<&tftpd::line_queue::LineQueue as std::io::Write>::write",
        ),
        (
            "std[e28293b1aa0f68bd]::time::Instant::now",
            "std::time::Instant::now",
        ),
        (
            "<[u8] as core::fmt::Debug>::fmt",
            "<[u8] as core::fmt::Debug>::fmt",
        ),
        ("tftpd::main", "tftpd::main"),
    ] {
        assert_eq!(path_of(demangled), path, "{demangled}");
    }
}
