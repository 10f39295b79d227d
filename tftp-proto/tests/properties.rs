//! Property tests: the codec is total and invertible, negotiation stays in range, and random
//! transfers over random impairments arrive byte-exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use tftp_proto::options::{Direction, MAX_BLKSIZE, MIN_BLKSIZE, negotiate};
use tftp_proto::packet::{ErrorCode, Mode, Options, Packet, Request};
use tftp_proto::testing::{LinkConfig, Pair, PairConfig, Rng};
use tftp_proto::{Config, OptionLimits, OptionValues, TimeoutPolicy};

fn text() -> impl Strategy<Value = String> {
    // Any UTF-8 without NUL.
    "[^\u{0}]{0,40}"
}

fn option_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9]{0,11}", text()), 0..6).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        pairs
            .into_iter()
            .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Owned {
    Rrq(String, Mode, Vec<(String, String)>),
    Wrq(String, Mode, Vec<(String, String)>),
    Data(u16, Vec<u8>),
    Ack(u16),
    Error(u16, String),
    Oack(Vec<(String, String)>),
}

fn packet() -> impl Strategy<Value = Owned> {
    let mode = prop_oneof![Just(Mode::Octet), Just(Mode::Netascii)];
    prop_oneof![
        (text(), mode.clone(), option_pairs()).prop_map(|(f, m, o)| Owned::Rrq(f, m, o)),
        (text(), mode, option_pairs()).prop_map(|(f, m, o)| Owned::Wrq(f, m, o)),
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(b, d)| Owned::Data(b, d)),
        any::<u16>().prop_map(Owned::Ack),
        (any::<u16>(), text()).prop_map(|(c, m)| Owned::Error(c, m)),
        option_pairs().prop_map(Owned::Oack),
    ]
}

fn pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

fn with_packet<R>(o: &Owned, f: impl FnOnce(Packet<'_>) -> R) -> R {
    match o {
        Owned::Rrq(name, mode, opts) | Owned::Wrq(name, mode, opts) => {
            let p = pairs(opts);
            let r = Request {
                filename: name,
                mode: *mode,
                options: Options::from_pairs(&p),
            };
            f(if matches!(o, Owned::Rrq(..)) {
                Packet::Rrq(r)
            } else {
                Packet::Wrq(r)
            })
        }
        Owned::Data(block, data) => f(Packet::Data {
            block: *block,
            data,
        }),
        Owned::Ack(block) => f(Packet::Ack { block: *block }),
        Owned::Error(code, message) => f(Packet::Error {
            code: ErrorCode(*code),
            message,
        }),
        Owned::Oack(opts) => {
            let p = pairs(opts);
            f(Packet::Oack(Options::from_pairs(&p)))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = Packet::decode(&bytes);
    }

    #[test]
    fn request_shaped_bytes_decode_or_error(
        op in 1u16..=6,
        parts in proptest::collection::vec(prop_oneof![text(), Just("octet".to_string()), Just("blksize".to_string()), Just("1468".to_string())], 0..8),
        nul_at_end in any::<bool>(),
    ) {
        let mut bytes = op.to_be_bytes().to_vec();
        for (i, p) in parts.iter().enumerate() {
            bytes.extend_from_slice(p.as_bytes());
            if i + 1 < parts.len() || nul_at_end { bytes.push(0); }
        }
        if let Ok(p) = Packet::decode(&bytes) {
            // Whatever decodes re-encodes to the same packet.
            let mut buf = vec![0u8; p.encoded_len()];
            let n = p.encode(&mut buf).unwrap();
            prop_assert_eq!(Packet::decode(&buf[..n]).unwrap(), p);
        }
    }

    #[test]
    fn encode_then_decode_is_the_identity(o in packet()) {
        with_packet(&o, |p| {
            let mut buf = vec![0u8; p.encoded_len()];
            let n = p.encode(&mut buf).unwrap();
            prop_assert_eq!(n, buf.len());
            prop_assert_eq!(Packet::decode(&buf).unwrap(), p);
            Ok(())
        })?;
    }

    #[test]
    fn negotiation_stays_in_range_and_below_the_request(
        blksize in proptest::option::of(0u64..100_000),
        windowsize in proptest::option::of(0u64..100_000),
        timeout in proptest::option::of(0u64..400),
        tsize in proptest::option::of(any::<u64>()),
        size in proptest::option::of(any::<u64>()),
        max_blksize in any::<u16>(),
        max_windowsize in any::<u16>(),
        max_window_bytes in 0usize..10_000_000,
        honour in any::<bool>(),
        read in any::<bool>(),
    ) {
        let strings: Vec<(&str, String)> = [("blksize", blksize), ("windowsize", windowsize), ("timeout", timeout), ("tsize", tsize)]
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v.to_string())))
            .collect();
        let pairs: Vec<(&str, &str)> = strings.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let asked = OptionValues::from_request(&Options::from_pairs(&pairs));
        let limits = OptionLimits {
            max_blksize, max_windowsize, max_window_bytes,
            timeout: if honour { TimeoutPolicy::Honour } else { TimeoutPolicy::Adaptive },
            ..OptionLimits::default()
        };
        let direction = if read { Direction::Read { size } } else { Direction::Write };
        let n = negotiate(&asked, &limits, direction);
        let t = n.transfer;
        prop_assert!((MIN_BLKSIZE..=MAX_BLKSIZE).contains(&t.blksize));
        prop_assert!(t.windowsize >= 1);
        if let Some(b) = n.oack.blksize {
            prop_assert!(u64::from(b) <= blksize.unwrap());
            prop_assert!(b <= max_blksize.max(MIN_BLKSIZE));
            prop_assert_eq!(b, t.blksize);
        } else {
            prop_assert_eq!(t.blksize, 512);
        }
        if let Some(w) = n.oack.windowsize {
            prop_assert!(u64::from(w) <= windowsize.unwrap());
            prop_assert!(w == 1 || w <= max_windowsize);
            prop_assert!(w == 1 || usize::from(w) * usize::from(t.blksize) <= max_window_bytes);
        }
        if let Some(to) = n.oack.timeout {
            prop_assert!(honour && Some(u64::from(to)) == timeout && to >= 1);
        }
        if let Some(ts) = n.oack.tsize {
            prop_assert!(tsize.is_some());
            prop_assert!(ts > 0 || !read);
        }
        // Every acknowledged option was asked for, and the client accepts the OACK.
        let back = n.oack.with_options(|o| asked.check_oack(&o));
        prop_assert_eq!(back.map(|b| (b.blksize, b.windowsize)), Ok((t.blksize, t.windowsize)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_transfers_arrive_byte_exact(
        size in 0usize..20_000,
        blksize in 8u16..2000,
        windowsize in 1u16..12,
        loss in 0.0f64..0.3,
        duplicate in 0.0f64..0.2,
        reorder in 0.0f64..0.2,
        seed in any::<u64>(),
        get in any::<bool>(),
        netascii in any::<bool>(),
    ) {
        let mut file = vec![0u8; size];
        Rng::new(seed).fill(&mut file);
        let mut config = Config::default();
        config.retries = 40;
        config.dally = std::time::Duration::from_secs(60);
        config.max_batch = if seed % 2 == 0 { 1 } else { 16 };
        let pair_config = PairConfig {
            file: file.clone(),
            asked: OptionValues { blksize: Some(blksize), windowsize: Some(windowsize), tsize: Some(0), ..Default::default() },
            mode: if netascii { Mode::Netascii } else { Mode::Octet },
            client: config.clone(),
            server: config,
            link: LinkConfig { loss, duplicate, reorder, seed, ..LinkConfig::default() },
            ..PairConfig::default()
        };
        let report = if get { Pair::get(pair_config) } else { Pair::put(pair_config) }.run();
        prop_assert!(report.client.is_success(), "{:?}", report.client.outcome);
        prop_assert!(report.server.as_ref().unwrap().is_success());
        prop_assert!(report.received == file);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The fuzz targets' drivers, run on random scripts in every test run.
    #[test]
    fn fuzz_drivers_hold_their_invariants(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        tftp_proto::testing::fuzz::server(&data);
        tftp_proto::testing::fuzz::client(&data);
    }

    #[test]
    fn server_driver_with_a_valid_request(
        flags in any::<u8>(),
        steps in proptest::collection::vec(any::<u8>(), 0..400),
        rrq in any::<bool>(),
    ) {
        let req: &[u8] = if rrq { b"\x00\x01f\x00octet\x00blksize\x0016\x00windowsize\x004\x00tsize\x000\x00timeout\x002\x00" } else { b"\x00\x02f\x00netascii\x00tsize\x00100\x00" };
        let mut data = vec![flags, req.len() as u8];
        data.extend_from_slice(req);
        data.extend_from_slice(&steps);
        tftp_proto::testing::fuzz::server(&data);
    }
}
