//! SipHash-1-3 (the function std's `HashMap` keys itself with) of a client address, in
//! straight-line code: the single-port listener hashes every datagram's source address to
//! find its session, and std's `DefaultHasher` takes an integer through its general byte
//! path (a loop over the bytes, a tail kept between writes) before the rounds: 152
//! instructions a datagram (callgrind, 100 clients × 1 MiB, single-port mode), 96 here (the
//! five rounds are 70 of them). The key is secret and random, as std's is: the addresses
//! are the peers' to choose (and to forge), and only a keyed function keeps a flood of
//! chosen addresses from making the route table a list.
//!
//! SipHash is by Aumasson and Bernstein ("SipHash: a fast short-input PRF", 2012): `c`
//! compression rounds a word, `d` finalization rounds; std uses `c = 1, d = 3`. The tests
//! check the construction with `c = 2, d = 4` against std's (deprecated, SipHash-2-4)
//! `SipHasher` under the same keys, byte for byte.

use std::hash::BuildHasher;
use std::net::SocketAddr;

/// A random SipHash-1-3 key and the hash of a client address under it.
#[derive(Clone, Copy)]
pub(crate) struct AddrHasher {
    k0: u64,
    k1: u64,
}

impl Default for AddrHasher {
    /// A fresh random key: two words from std's randomly keyed hasher (itself seeded from
    /// the operating system's random source).
    fn default() -> Self {
        let random = std::hash::RandomState::new();
        AddrHasher {
            k0: random.hash_one(0x5eed_u64),
            k1: random.hash_one(0x5eed_u64 + 1),
        }
    }
}

impl std::fmt::Debug for AddrHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays secret, in logs too.
        f.write_str("AddrHasher")
    }
}

impl AddrHasher {
    /// The hash of `peer`: an IPv4 address and port as one word, an IPv6 address and port as
    /// three (different lengths: the two never share an input). Flow label and scope are
    /// left out, so equal addresses (`SocketAddrV6`'s equality compares them too) hash alike.
    pub(crate) fn hash(&self, peer: SocketAddr) -> u64 {
        match peer {
            SocketAddr::V4(a) => {
                let word = u64::from(a.ip().to_bits()) << 16 | u64::from(a.port());
                sip::<1, 3>(self.k0, self.k1, &[word])
            }
            SocketAddr::V6(a) => {
                let ip = a.ip().to_bits();
                let words = [(ip >> 64) as u64, ip as u64, u64::from(a.port())];
                sip::<1, 3>(self.k0, self.k1, &words)
            }
        }
    }
}

/// SipHash-`C`-`D` of `words` (taken as their little-endian bytes, `8 × words.len()` of them)
/// under key `(k0, k1)`.
#[inline(always)]
fn sip<const C: usize, const D: usize>(k0: u64, k1: u64, words: &[u64]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            round(v);
        }
        v[0] ^= m;
    };
    for &m in words {
        compress(&mut v, m);
    }
    // The last block: the message's length in bytes (mod 256) in the top byte, no bytes left
    // over (the message is whole words).
    compress(&mut v, ((words.len() as u64 * 8) & 0xff) << 56);
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    /// Std's SipHash-2-4 of the words' little-endian bytes under `(k0, k1)`.
    #[allow(deprecated)]
    fn std_sip24(k0: u64, k1: u64, words: &[u64]) -> u64 {
        let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        h.write(&bytes);
        h.finish()
    }

    #[test]
    fn the_construction_is_siphash() {
        // The reference key and message of the SipHash paper (key 00..0f, message 00 01 ..),
        // then keys and words from a simple generator against std.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let m0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        // The reference implementation's vector for the 8-byte message 00..07 (its output
        // bytes, the hash's little-endian serialization).
        let expected = u64::from_le_bytes([0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93]);
        assert_eq!(sip::<2, 4>(k0, k1, &[m0]), expected);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1000 {
            let (k0, k1) = (next(), next());
            let words = [next(), next(), next()];
            for n in 0..=3 {
                assert_eq!(
                    sip::<2, 4>(k0, k1, &words[..n]),
                    std_sip24(k0, k1, &words[..n])
                );
            }
        }
    }

    #[test]
    fn addresses_hash_by_address_and_port_only_under_a_secret_key() {
        let h = AddrHasher::default();
        let v4 = |a, p| SocketAddr::from((Ipv4Addr::from_bits(a), p));
        assert_eq!(h.hash(v4(0xc612_0001, 69)), h.hash(v4(0xc612_0001, 69)));
        assert_ne!(h.hash(v4(0xc612_0001, 69)), h.hash(v4(0xc612_0001, 70)));
        assert_ne!(h.hash(v4(0xc612_0001, 69)), h.hash(v4(0xc612_0002, 69)));
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let a = SocketAddr::V6(SocketAddrV6::new(ip, 1069, 0, 0));
        let b = SocketAddr::V6(SocketAddrV6::new(ip, 1069, 7, 3));
        assert_eq!(h.hash(a), h.hash(b), "flow label and scope left out");
        assert_ne!(
            h.hash(a),
            h.hash(SocketAddr::V6(SocketAddrV6::new(ip, 1070, 0, 0)))
        );
        // Another key, other hashes (the chance of one equal among 64 is 2^-58).
        let other = AddrHasher::default();
        let same = (0..64)
            .filter(|&i| h.hash(v4(0xc612_0000 + i, 69)) == other.hash(v4(0xc612_0000 + i, 69)))
            .count();
        assert_eq!(same, 0);
        assert_eq!(format!("{h:?}"), "AddrHasher");
    }
}
