//! U-Boot's `tftpboot` against `tftpd`: Debian's `u-boot-qemu` (U-Boot 2023.01, the
//! `qemu-x86_64` build) as the firmware of a diskless qemu guest under software emulation
//! (`accel=tcg`), driven on its serial console, each stage bounded in time and named when it
//! fails.
//!
//! | test | console commands before `tftpboot` | U-Boot asks | tftpd grants |
//! |---|---|---|---|
//! | `uboot_tftpboot_defaults` | none | `timeout 5` `tsize 0` `blksize 1468` | all three |
//! | `uboot_tftpboot_large_blocksize` | `setenv tftpblocksize 65464` | the same: U-Boot caps it to 1468 | all three |
//! | `uboot_tftpboot_windowsize_8` | `setenv tftpwindowsize 8` | the same and `windowsize 8` | all four |
//!
//! Each test boots U-Boot with an e1000 on a tap device in a network namespace of its own
//! (as `boot.rs`'s native PXE test does, without DHCP: the addresses are set on the console),
//! stops the autoboot countdown with a key, fetches a 4 MiB file of pseudo-random bytes from
//! `tftpd` on 192.168.77.1:69 (`tftpboot`), and has U-Boot compute the CRC-32 of what it
//! received (`crc32`). It passes when U-Boot reports the file's size, its CRC-32 matches the
//! file's, and `tftpd`'s JSON session log shows one completed transfer of the whole file with
//! the block size and window expected.
//!
//! Why not qemu's user network: slirp answers port 69 on 10.0.2.2 itself, and this U-Boot
//! build cannot send to another port (`tftpdstp` needs `CONFIG_TFTP_PORT`, which is off).
//! Why 1468 at most: U-Boot reassembles no IP fragments (`CONFIG_IP_DEFRAG` is off), so it
//! caps `tftpblocksize` to what fits one 1500-byte Ethernet frame.
//!
//! Guests run one at a time. The packages come from `scripts/test-deps.sh`: a missing one
//! fails the test; a kernel that refuses a network namespace or a tap device (not root, no
//! `/dev/net/tun`) makes the test print why and skip. The README's "Booting real machines"
//! section shows these exact command lines; a test checks that it does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::process::ChildStdin;
use std::thread::sleep;
use std::time::{Duration, Instant};

#[path = "support/lab.rs"]
mod lab;
mod support;

use lab::{
    Lab, NETNS_SETUP, TAP_SETUP, TAP_TFTPD, flat, one_guest, printable, readme_section, require,
    skip,
};

/// From qemu's start to U-Boot's autoboot countdown (about 1 s here).
const BOOT_LIMIT: Duration = Duration::from_secs(60);
/// One `tftpboot` of [`FILE`] (2-4 s here) or any other console command.
const FETCH_LIMIT: Duration = Duration::from_secs(60);

const UBOOT_ROM: &str = "/usr/lib/u-boot/qemu-x86_64/u-boot.rom";

/// The served file: 4 MiB of pseudo-random bytes (more than 2858 blocks of 1468 bytes).
const FILE: &str = "random.bin";
const FILE_SIZE: usize = 4 << 20;

// The command lines, run with the test's directory as the working directory (`root/` holds
// the served file), after `lab::NETNS_SETUP` and `lab::TAP_SETUP`; `tftpd` is
// `lab::TAP_TFTPD`. The README shows them verbatim.

/// The console is qemu's stdio: the test writes U-Boot's input and reads its output.
const UBOOT_QEMU: &str = "qemu-system-x86_64 -machine pc,accel=tcg -m 256 \
     -nodefaults -display none -monitor none -serial stdio -no-reboot \
     -bios /usr/lib/u-boot/qemu-x86_64/u-boot.rom \
     -netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=off \
     -device e1000,netdev=n0";

/// Typed at U-Boot's prompt first: a static address next to tftpd's.
const UBOOT_NET: &[&str] = &[
    "setenv ipaddr 192.168.77.2",
    "setenv netmask 255.255.255.0",
    "setenv serverip 192.168.77.1",
];
/// `CONFIG_SYS_LOAD_ADDR` of this build (32 MiB into the guest's 256).
const LOAD_ADDR: &str = "0x2000000";
const TFTPBOOT: &str = "tftpboot 0x2000000 random.bin";
const LARGE_BLOCKSIZE: &str = "setenv tftpblocksize 65464";
const CAPPED: &str = "Capping tftp block size option to 1468 (was 65464)";
const WINDOWSIZE_8: &str = "setenv tftpwindowsize 8";

/// The prompt, at the start of a line.
const PROMPT: &str = "\n=> ";

/// What the console shows when something went wrong, and what it means.
const TROUBLE: &[(&str, &str)] = &[
    ("TFTP error", "tftpd answered with an ERROR packet"),
    (
        "Retry count exceeded",
        "U-Boot timed out waiting for tftpd (10 times 5 s)",
    ),
    (
        "Invalid blk size",
        "tftpd granted a larger block than asked",
    ),
    ("Invalid timeout val", "tftpd changed the timeout asked"),
    ("Unknown command", "this U-Boot lacks a command"),
    (
        "starting USB",
        "the autoboot countdown was not stopped: U-Boot runs its boot command",
    ),
    (
        "BOOTP broadcast",
        "U-Boot asks DHCP: the autoboot countdown was not stopped",
    ),
];

/// U-Boot's serial console: qemu's stdin and `serial.log` (its stdout), read from where the
/// last wait stopped.
struct Console {
    input: ChildStdin,
    seen: usize,
}

impl Console {
    fn boot(lab: &mut Lab) -> Console {
        let input = lab.spawn_console("qemu", UBOOT_QEMU);
        Console { input, seen: 0 }
    }

    /// Wait for `needle` after what was seen; returns the console up to and including it
    /// (without escape sequences and carriage returns). Panics naming `stage` on trouble, on
    /// qemu's exit, or after `limit`.
    fn wait_for(&mut self, lab: &mut Lab, needle: &str, limit: Duration, stage: &str) -> String {
        let start = Instant::now();
        loop {
            let serial = fs::read(lab.path("serial.log")).unwrap_or_default();
            let fresh = &serial[self.seen.min(serial.len())..];
            let found = find(fresh, needle.as_bytes()).map(|at| at + needle.len());
            let upto = &fresh[..found.unwrap_or(fresh.len())];
            let trouble = TROUBLE
                .iter()
                .find(|(sign, _)| find(upto, sign.as_bytes()).is_some());
            if let (Some(end), None) = (found, trouble) {
                self.seen += end;
                return printable(&String::from_utf8_lossy(upto));
            }
            let qemu = lab.procs.last_mut().unwrap();
            let why = if let Some((_, what)) = trouble {
                Some(what.to_string())
            } else if let Some(status) = qemu.child.try_wait().unwrap() {
                Some(format!("qemu exited: {status}"))
            } else if start.elapsed() > limit {
                Some(format!("no {needle:?} within {limit:?}"))
            } else {
                None
            };
            if let Some(why) = why {
                panic!("{stage} failed: {why}\n{}", lab.diagnostics());
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, text: &str) {
        self.input.write_all(text.as_bytes()).unwrap();
        self.input.flush().unwrap();
    }

    /// Type `line` at the prompt; returns what U-Boot printed until its next prompt.
    fn command(&mut self, lab: &mut Lab, line: &str) -> String {
        self.send(&format!("{line}\n"));
        let out = self.wait_for(lab, PROMPT, FETCH_LIMIT, &format!("`{line}`"));
        out.trim_end_matches(PROMPT).to_string()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// xorshift64*: the same 4 MiB in every run.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's and U-Boot's `crc32`).
fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// What one fetch should look like in tftpd's session log.
struct Expect {
    /// Typed before `tftpboot`.
    setup: &'static [&'static str],
    /// Printed by `tftpboot` before it sends its request.
    notice: Option<&'static str>,
    blksize: u64,
    windowsize: Option<u64>,
}

/// Boot U-Boot, stop its autoboot, set its address, run `expect.setup`, fetch [`FILE`] and
/// check it; `None` (after printing why) when the kernel refuses a namespace or tap device.
fn fetch(test: &str, expect: &Expect) -> Option<()> {
    require(&["qemu-system-x86_64"], &[UBOOT_ROM]);
    let _guest = one_guest();
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    if let Err(why) = lab.add_tap() {
        skip(test, &why);
        return None;
    }
    let data = pseudo_random(FILE_SIZE);
    let crc = crc32(&data);
    fs::write(lab.path("root").join(FILE), &data).unwrap();
    lab.spawn("tftpd", TAP_TFTPD);
    lab.wait_for_udp_port(69, "tftpd");

    let start = Instant::now();
    let mut console = Console::boot(&mut lab);
    console.wait_for(
        &mut lab,
        "Hit any key to stop autoboot",
        BOOT_LIMIT,
        "stage 1/4 (U-Boot starts and counts down to its autoboot)",
    );
    console.send(" ");
    console.wait_for(
        &mut lab,
        PROMPT,
        FETCH_LIMIT,
        "stage 2/4 (a key stops the autoboot: U-Boot's prompt)",
    );
    let booted = start.elapsed();
    for line in UBOOT_NET.iter().chain(expect.setup) {
        let out = console.command(&mut lab, line);
        assert_eq!(
            out.trim(),
            *line,
            "`{line}`: U-Boot printed more than the echo\n{}",
            lab.diagnostics()
        );
    }

    let start = Instant::now();
    let out = console.command(&mut lab, TFTPBOOT);
    let took = start.elapsed();
    let bytes = out
        .lines()
        .find_map(|l| l.strip_prefix("Bytes transferred = "))
        .unwrap_or_else(|| {
            panic!(
                "stage 3/4 (tftpboot) failed: no \"Bytes transferred\" in {out:?}\n{}",
                lab.diagnostics()
            )
        });
    // "4194304 (400000 hex)"
    let (decimal, hex) = bytes
        .trim_end_matches(" hex)")
        .split_once(" (")
        .unwrap_or_else(|| panic!("stage 3/4 (tftpboot): unexpected {bytes:?}"));
    let received: usize = decimal.parse().unwrap();
    assert_eq!(
        usize::from_str_radix(hex, 16).unwrap(),
        received,
        "{bytes:?}"
    );
    assert_eq!(
        received,
        FILE_SIZE,
        "stage 3/4 (tftpboot): U-Boot received {received} bytes of {FILE_SIZE}\n{}",
        lab.diagnostics()
    );
    if let Some(notice) = expect.notice {
        assert!(
            out.contains(notice),
            "stage 3/4 (tftpboot): U-Boot did not print {notice:?}: {out:?}"
        );
    }

    let out = console.command(&mut lab, &format!("crc32 {LOAD_ADDR} {hex}"));
    let theirs = out
        .split("==> ")
        .nth(1)
        .map(str::trim)
        .unwrap_or_else(|| panic!("stage 4/4 (crc32): no checksum in {out:?}"));
    assert_eq!(
        theirs,
        format!("{crc:08x}"),
        "stage 4/4 (crc32): what U-Boot received differs from {FILE}\n{}",
        lab.diagnostics()
    );

    let sessions = lab.sessions(&[FILE]);
    assert_eq!(sessions.len(), 1, "one transfer: {sessions:?}");
    let s = &sessions[0];
    assert_eq!(s.file, FILE);
    assert_eq!(s.outcome, "completed", "{s}");
    assert_eq!(s.bytes, FILE_SIZE as u64, "bytes sent ≠ file size: {s}");
    assert_eq!(s.asked_timeout, Some(5), "U-Boot asks timeout 5: {s}");
    assert_eq!(s.asked_tsize, Some(0), "U-Boot asks tsize: {s}");
    assert_eq!(s.tsize, Some(FILE_SIZE as u64), "tsize answered: {s}");
    assert_eq!(s.asked_blksize, Some(expect.blksize), "blksize asked: {s}");
    assert_eq!(s.blksize, expect.blksize, "blksize granted: {s}");
    assert_eq!(
        s.asked_windowsize, expect.windowsize,
        "windowsize asked: {s}"
    );
    assert_eq!(
        s.windowsize,
        expect.windowsize.unwrap_or(1),
        "windowsize granted: {s}"
    );
    eprintln!(
        "{test}: U-Boot's prompt after {booted:.1?}; tftpboot {received} bytes in {took:.1?} \
         (tftpd: {:.0?} ms, {} packets received, {} retransmissions), blksize {}, \
         windowsize {}, CRC-32 {crc:08x}",
        s.duration_ms.unwrap_or(f64::NAN),
        s.packets_received.unwrap_or(0),
        s.retransmissions.unwrap_or(0),
        s.blksize,
        s.windowsize,
    );
    Some(())
}

#[test]
fn uboot_tftpboot_defaults() {
    fetch(
        "uboot_tftpboot_defaults",
        &Expect {
            setup: &[],
            notice: None,
            blksize: 1468,
            windowsize: None,
        },
    );
}

/// The largest block RFC 2348 allows: without IP reassembly U-Boot asks for 1468 instead.
#[test]
fn uboot_tftpboot_large_blocksize() {
    fetch(
        "uboot_tftpboot_large_blocksize",
        &Expect {
            setup: &[LARGE_BLOCKSIZE],
            notice: Some(CAPPED),
            blksize: 1468,
            windowsize: None,
        },
    );
}

#[test]
fn uboot_tftpboot_windowsize_8() {
    fetch(
        "uboot_tftpboot_windowsize_8",
        &Expect {
            setup: &[WINDOWSIZE_8],
            notice: None,
            blksize: 1468,
            windowsize: Some(8),
        },
    );
}

#[test]
fn crc32_is_zlibs() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
}

/// The README's "Booting real machines" section shows the command lines and console commands
/// these tests use, verbatim.
#[test]
fn readme_section_shows_the_uboot_commands() {
    let text = flat(&readme_section());
    let mut lines: Vec<&str> = vec![
        TAP_TFTPD,
        UBOOT_QEMU,
        TFTPBOOT,
        LARGE_BLOCKSIZE,
        WINDOWSIZE_8,
    ];
    lines.extend(NETNS_SETUP);
    lines.extend(TAP_SETUP);
    lines.extend(UBOOT_NET);
    for line in lines {
        assert!(
            text.contains(&flat(line)),
            "the README section lacks `{}`",
            flat(line)
        );
    }
}
