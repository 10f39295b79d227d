//! A server session driven by an arbitrary request and an arbitrary sequence of datagrams
//! and time steps; see `tftp_proto::testing::fuzz` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tftp_proto::testing::fuzz::server(data));
