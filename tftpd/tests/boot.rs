//! Boot real firmware from `tftpd`: a diskless qemu guest under software emulation
//! (`accel=tcg`), each test bounded in time and saying which stage failed.
//!
//! | test | firmware | network | tftpd |
//! |---|---|---|---|
//! | `bios_ipxe_over_user_network` | SeaBIOS, the e1000's iPXE option ROM | qemu's user network (slirp) | `--single-port`, 127.0.0.1:6969 |
//! | `ovmf_ipxe_over_user_network` | OVMF (q35), the virtio-net's iPXE EFI ROM | slirp | `--max-blksize 1024`, 127.0.0.1:6969 |
//! | `ovmf_native_pxe_on_port_69` | OVMF's own UEFI PXE client (NIC ROM off), then iPXE | tap + dnsmasq (DHCP only) | defaults, 192.168.77.1:69 |
//! | `ovmf_native_pxe_on_the_bed_listening_on_the_service_address` | OVMF's UEFI PXE, then iPXE | the test bed (`scripts/netbed.sh`): tap on its bridge, dnsmasq (DHCP only) in tb-srv | `--listen 198.18.0.2:69`, the bed server's secondary address |
//! | `ovmf_native_pxe_on_the_bed_wildcard_listener` | the same | the same | defaults (`[::]:69`), asked at 198.18.0.2 |
//!
//! slirp answers port 69 on 10.0.2.2 itself, so over slirp `tftpd` listens on another port and
//! the DHCP boot file is the URL `tftp://10.0.2.2:6969/boot.ipxe`: slirp forwards 10.0.2.2 to
//! the host's 127.0.0.1. `boot.ipxe` (in `tests/boot/`) prints a marker, chains `stage2.ipxe`,
//! which fetches Debian's `ipxe.efi` (about 830 KiB) and prints `TFTPD-BOOT-OK`. Natively, the
//! firmware loads `ipxe.efi` as its network boot program (probing its size first, then
//! downloading it with `windowsize 4`) and runs it; iPXE then asks DHCP again and gets the
//! same `boot.ipxe`.
//!
//! A test passes when the serial console shows the marker and `tftpd`'s JSON session log shows
//! every transfer completed with the file's size (the UEFI size probe as `size_probe`).
//!
//! Network safety: every test runs in a network namespace of its own (`unshare --net`), which
//! holds `lo` (with one extra, documentation-range address) and, natively, a tap device with
//! the guest behind it. No route leads out of it: slirp's own outbound traffic (its DNS
//! forwarder, anything the guest sends elsewhere) fails with "network unreachable". The tests
//! use neither `guestfwd` nor any 10.0.2.x address but the forwarded 10.0.2.2:6969.
//!
//! On the bed, the guest's tap is a port of the bed's bridge in `tb-sw` (qemu runs there), and
//! DHCP sends both the firmware and iPXE to 198.18.0.2, the secondary address of `tb-srv`'s
//! eth0: the session log must show every transfer served from it. UEFI PXE drops a reply
//! from another address than the one it asked, so with a wildcard listener this passes only
//! because transfers answer from the request's destination address. The bed is shared with
//! `tests/netbed.rs` (`tests/support/netbed.rs`: one test at a time, across processes too);
//! a [`Lab`] in each of its two namespaces starts the processes.
//!
//! Guests run one at a time (2 cores). The packages come from `scripts/test-deps.sh`: a
//! missing tool fails the test; a kernel that refuses a network namespace or a tap device
//! makes the test print why and skip. The README's "Booting real machines" section shows
//! these exact command lines; a test checks that it does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

#[path = "support/lab.rs"]
mod lab;
mod support;

use lab::{
    Lab, NETNS_SETUP, Session, TAP_SETUP, TAP_TFTPD, file_size, flat, one_guest, readme_section,
    require, skip,
};
use support::netbed;

/// From qemu's start to the success marker on the serial console. The boots take 6-20 s here.
const BOOT_LIMIT: Duration = Duration::from_secs(75);

const MARK_OK: &str = "TFTPD-BOOT-OK";
const MARK_FAILED: &str = "TFTPD-BOOT-FAILED";

const OVMF: &str = "/usr/share/ovmf/OVMF.fd";
const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";
const SCRIPTS: &[&str] = &["boot.ipxe", "stage2.ipxe"];

// The command lines, run with the test's directory as the working directory (`root/` holds
// the served files). The README shows them verbatim (`tftpd` is the built binary), with
// `lab::NETNS_SETUP` and, natively, `lab::TAP_SETUP` before them.

const BIOS_TFTPD: &str =
    "tftpd --root root --listen 127.0.0.1:6969 --single-port --session-log sessions.log -v";
const BIOS_QEMU: &str = "qemu-system-x86_64 -machine pc,accel=tcg,graphics=off -m 256 \
     -nodefaults -display none -monitor none -serial file:serial.log -no-reboot \
     -netdev user,id=n0,bootfile=tftp://10.0.2.2:6969/boot.ipxe \
     -device e1000,netdev=n0,bootindex=1";

const OVMF_IPXE_TFTPD: &str =
    "tftpd --root root --listen 127.0.0.1:6969 --max-blksize 1024 --session-log sessions.log -v";
const OVMF_IPXE_QEMU: &str = "qemu-system-x86_64 -machine q35,accel=tcg -m 256 \
     -nodefaults -display none -monitor none -serial file:serial.log -no-reboot \
     -bios /usr/share/ovmf/OVMF.fd \
     -netdev user,id=n0,bootfile=tftp://10.0.2.2:6969/boot.ipxe \
     -device virtio-net-pci,netdev=n0,bootindex=1";

/// DHCP only (`--port=0`: no DNS): the firmware gets `ipxe.efi` from 192.168.77.1; iPXE
/// (user class "iPXE") gets the script's URL.
const NATIVE_DNSMASQ: &str = "dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root \
     --interface=tap0 --bind-interfaces --leasefile-ro --pid-file= --log-dhcp --log-facility=- \
     --dhcp-range=192.168.77.100,192.168.77.150,255.255.255.0,1h \
     --enable-ra --dhcp-range=fd77::,ra-only \
     --dhcp-userclass=set:ipxe,iPXE \
     --dhcp-boot=tag:!ipxe,ipxe.efi,,192.168.77.1 \
     --dhcp-boot=tag:ipxe,tftp://192.168.77.1/boot.ipxe";
const NATIVE_QEMU: &str = "qemu-system-x86_64 -machine q35,accel=tcg -m 256 \
     -nodefaults -display none -monitor none -serial file:serial.log -no-reboot \
     -bios /usr/share/ovmf/OVMF.fd \
     -netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=off \
     -device virtio-net-pci,netdev=n0,romfile=,bootindex=1";

/// What the serial console shows, in order, and what each step means.
type Stages = &'static [(&'static str, &'static str)];

const IPXE_STAGES: Stages = &[
    ("iPXE initialising devices", "the firmware starts iPXE"),
    (
        "Filename: tftp://",
        "iPXE gets an address and the boot file URL by DHCP",
    ),
    (
        "TFTPD-BOOT stage 1",
        "iPXE loads and runs boot.ipxe from tftpd",
    ),
    ("TFTPD-BOOT stage 2", "boot.ipxe chains stage2.ipxe"),
    (MARK_OK, "stage2.ipxe fetches ipxe.efi"),
];

const NATIVE_STAGES: Stages = &[
    (">>Start PXE over IPv4", "OVMF starts its UEFI PXE client"),
    (
        "NBP filename is",
        "UEFI PXE gets an address and the boot file by DHCP",
    ),
    (
        "NBP filesize is",
        "UEFI PXE learns ipxe.efi's size (the tsize probe)",
    ),
    (
        "NBP file downloaded successfully",
        "UEFI PXE downloads ipxe.efi",
    ),
    ("iPXE initialising devices", "OVMF runs ipxe.efi"),
    ("Filename: tftp://", "iPXE gets the boot script URL by DHCP"),
    (
        "TFTPD-BOOT stage 1",
        "iPXE loads and runs boot.ipxe from tftpd",
    ),
    ("TFTPD-BOOT stage 2", "boot.ipxe chains stage2.ipxe"),
    (MARK_OK, "stage2.ipxe fetches ipxe.efi"),
];

impl Lab {
    /// The served files: the two scripts and Debian's `ipxe.efi` (a copy: tftpd refuses
    /// symbolic links out of the root).
    fn fill_root(&self) {
        let boot = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boot");
        for script in SCRIPTS {
            fs::copy(Path::new(boot).join(script), self.path("root").join(script)).unwrap();
        }
        fs::copy(IPXE_EFI, self.path("root/ipxe.efi")).unwrap();
    }

    fn serve(&mut self, tftpd: &str, port: u16) {
        self.fill_root();
        self.spawn("tftpd", tftpd);
        self.wait_for_udp_port(port, "tftpd");
    }

    /// Start qemu and watch the serial console until the success marker; panics naming the
    /// stage that failed.
    fn boot(&mut self, qemu: &str, stages: Stages) -> Duration {
        let start = Instant::now();
        self.spawn("qemu", qemu);
        loop {
            let serial = self.read("serial.log");
            if serial.contains(MARK_OK) {
                return start.elapsed();
            }
            let qemu = self.procs.last_mut().unwrap();
            let why = if serial.contains(MARK_FAILED) {
                Some("the boot script printed TFTPD-BOOT-FAILED".to_string())
            } else if let Some(status) = qemu.child.try_wait().unwrap() {
                Some(format!("qemu exited: {status}"))
            } else if start.elapsed() > BOOT_LIMIT {
                Some(format!("no progress within {BOOT_LIMIT:?}"))
            } else {
                None
            };
            if let Some(why) = why {
                let reached = stages
                    .iter()
                    .take_while(|(needle, _)| serial.contains(needle))
                    .count();
                panic!(
                    "stage {}/{} failed: {} ({why}; the console lacks {:?})\n{}",
                    reached + 1,
                    stages.len(),
                    stages[reached.min(stages.len() - 1)].1,
                    stages[reached.min(stages.len() - 1)].0,
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(200));
        }
    }
}

/// iPXE's three transfers: each completed once with the file's size; iPXE asks `tsize` and
/// its largest block size, and gets at most `max_blksize`.
fn assert_ipxe_transfers(lab: &Lab, sessions: &[Session], max_blksize: u64) {
    for name in ["boot.ipxe", "stage2.ipxe", "ipxe.efi"] {
        let size = file_size(lab, name);
        let done: Vec<&Session> = sessions
            .iter()
            .filter(|s| s.file == name && s.outcome == "completed")
            .collect();
        assert_eq!(done.len(), 1, "{name}: one completed transfer expected");
        let s = done[0];
        assert_eq!(s.bytes, size, "{name}: bytes sent ≠ file size: {s}");
        assert_eq!(s.asked_tsize, Some(0), "{name}: iPXE asks tsize: {s}");
        assert_eq!(s.tsize, Some(size), "{name}: tsize answered: {s}");
        let asked = s.asked_blksize.expect("iPXE asks for a block size");
        assert_eq!(s.blksize, asked.min(max_blksize), "{name}: blksize: {s}");
    }
}

fn assert_nothing_failed(sessions: &[Session]) {
    for s in sessions {
        assert!(
            s.outcome == "completed" || s.outcome == "size_probe",
            "a transfer did not complete: {s}"
        );
    }
}

/// UEFI PXE's transfers (a size probe, then one download of `ipxe.efi` with a window), then
/// iPXE's ([`assert_ipxe_transfers`]); block sizes granted as asked, up to `max_blksize`.
fn assert_native_transfers(lab: &Lab, sessions: &[Session], max_blksize: u64) {
    assert_nothing_failed(sessions);

    // The firmware's transfers: those before iPXE's first (boot.ipxe).
    let split = sessions.iter().position(|s| s.file == "boot.ipxe").unwrap();
    let (firmware, ipxe) = sessions.split_at(split);
    let size = file_size(lab, "ipxe.efi");
    let probes: Vec<&Session> = firmware
        .iter()
        .filter(|s| s.outcome == "size_probe")
        .collect();
    assert!(
        !probes.is_empty(),
        "UEFI PXE asks the size first and aborts: expected a size_probe"
    );
    for p in &probes {
        assert_eq!(p.file, "ipxe.efi");
        assert_eq!(p.asked_tsize, Some(0), "the probe asks tsize: {p}");
        assert_eq!(p.tsize, Some(size), "the probe learns the size: {p}");
    }
    let done: Vec<&Session> = firmware
        .iter()
        .filter(|s| s.outcome == "completed")
        .collect();
    assert_eq!(done.len(), 1, "one download of ipxe.efi by the firmware");
    let d = done[0];
    assert_eq!(d.file, "ipxe.efi");
    assert_eq!(d.bytes, size, "ipxe.efi: bytes sent ≠ file size: {d}");
    let window = d.asked_windowsize.expect("UEFI PXE asks for a window");
    assert!(window > 1, "a window of more than one block: {d}");
    assert_eq!(d.windowsize, window, "the window granted: {d}");
    let asked = d.asked_blksize.expect("UEFI PXE asks for a block size");
    assert_eq!(
        d.blksize,
        asked.min(max_blksize),
        "the block size granted: {d}"
    );
    assert_ipxe_transfers(lab, ipxe, max_blksize);
}

#[test]
fn bios_ipxe_over_user_network() {
    require(
        &["qemu-system-x86_64"],
        &[IPXE_EFI, "/usr/lib/ipxe/qemu/efi-e1000.rom"],
    );
    let _guest = one_guest();
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => return skip("bios_ipxe_over_user_network", &why),
    };
    lab.serve(BIOS_TFTPD, 6969);
    let took = lab.boot(BIOS_QEMU, IPXE_STAGES);
    eprintln!("BIOS + iPXE (--single-port) booted in {took:.1?}");
    let sessions = lab.sessions(&["boot.ipxe", "stage2.ipxe", "ipxe.efi"]);
    assert_nothing_failed(&sessions);
    assert_ipxe_transfers(&lab, &sessions, 65464);
}

#[test]
fn ovmf_ipxe_over_user_network() {
    require(
        &["qemu-system-x86_64"],
        &[OVMF, IPXE_EFI, "/usr/lib/ipxe/qemu/efi-virtio.rom"],
    );
    let _guest = one_guest();
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => return skip("ovmf_ipxe_over_user_network", &why),
    };
    lab.serve(OVMF_IPXE_TFTPD, 6969);
    let took = lab.boot(OVMF_IPXE_QEMU, IPXE_STAGES);
    eprintln!("OVMF + iPXE (--max-blksize 1024) booted in {took:.1?}");
    let sessions = lab.sessions(&["boot.ipxe", "stage2.ipxe", "ipxe.efi"]);
    assert_nothing_failed(&sessions);
    assert_ipxe_transfers(&lab, &sessions, 1024);
}

#[test]
fn ovmf_native_pxe_on_port_69() {
    require(&["qemu-system-x86_64", "dnsmasq"], &[OVMF, IPXE_EFI]);
    let _guest = one_guest();
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => return skip("ovmf_native_pxe_on_port_69", &why),
    };
    if let Err(why) = lab.add_tap() {
        return skip("ovmf_native_pxe_on_port_69", &why);
    }
    lab.serve(TAP_TFTPD, 69);
    lab.spawn("dnsmasq", NATIVE_DNSMASQ);
    lab.wait_for_udp_port(67, "dnsmasq");
    let took = lab.boot(NATIVE_QEMU, NATIVE_STAGES);
    eprintln!("OVMF UEFI PXE + iPXE (tftpd defaults, port 69) booted in {took:.1?}");
    let sessions = lab.sessions(&["ipxe.efi", "boot.ipxe", "stage2.ipxe"]);
    assert_native_transfers(&lab, &sessions, 65464);
}

/// The README's "Booting real machines" section shows the command lines these tests run,
/// verbatim.
#[test]
fn readme_section_shows_the_commands_the_tests_run() {
    let section = readme_section();
    let text = flat(&section);
    let mut lines: Vec<&str> = vec![
        BIOS_TFTPD,
        BIOS_QEMU,
        OVMF_IPXE_TFTPD,
        OVMF_IPXE_QEMU,
        TAP_TFTPD,
        NATIVE_DNSMASQ,
        NATIVE_QEMU,
    ];
    lines.extend(NETNS_SETUP);
    lines.extend(TAP_SETUP);
    for line in lines {
        assert!(
            text.contains(&flat(line)),
            "the README section lacks `{}`",
            flat(line)
        );
    }
    for script in SCRIPTS {
        let body = fs::read_to_string(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boot")).join(script),
        )
        .unwrap();
        assert!(
            section.contains(&body),
            "the README section lacks {script} as it is"
        );
    }
}

// On the network test bed (`scripts/netbed.sh`, see `tests/netbed.rs`): the guest's tap is a
// port of the bed's bridge (tb-sw), `tftpd` and a DHCP-only dnsmasq run in tb-srv, whose
// eth0 has a primary (198.18.0.1) and a secondary, service address (198.18.0.2). DHCP sends
// the firmware and iPXE to the service address, as a provisioning network with a VIP does.

/// The guest's tap device, in tb-sw, attached to the bed's bridge.
const BED_TAP: &str = "tb-boot0";
const BED_TAP_SETUP: &[&str] = &[
    "ip tuntap add dev tb-boot0 mode tap",
    "ip link set tb-boot0 master br0 mtu 1500 up",
];
/// The bed's MTU (1500) less the IPv4, UDP and TFTP headers: `tftpd` clamps to it.
const BED_MAX_BLKSIZE: u64 = 1468;
/// `tftpd` in tb-srv on the service address only, or on its default wildcard listener.
const BED_TFTPD_SERVICE: &str =
    "tftpd --root root --listen 198.18.0.2:69 --session-log sessions.log -v";
const BED_TFTPD_WILDCARD: &str = "tftpd --root root --session-log sessions.log -v";
/// dnsmasq in tb-srv, DHCP only, on the bed's server link: the firmware gets `ipxe.efi` from
/// the service address, iPXE (user class "iPXE") the script's URL there. Leases from a range
/// no other bed address uses.
const BED_DNSMASQ: &str = "dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root \
     --interface=eth0 --bind-interfaces --leasefile-ro --pid-file= --log-dhcp --log-facility=- \
     --dhcp-range=198.18.2.10,198.18.2.50,255.255.0.0,1h \
     --dhcp-userclass=set:ipxe,iPXE \
     --dhcp-boot=tag:!ipxe,ipxe.efi,,198.18.0.2 \
     --dhcp-boot=tag:ipxe,tftp://198.18.0.2/boot.ipxe";
/// qemu in tb-sw on [`BED_TAP`]; OVMF's own UEFI PXE client (no NIC option ROM).
const BED_QEMU: &str = "qemu-system-x86_64 -machine q35,accel=tcg -m 256 \
     -nodefaults -display none -monitor none -serial file:serial.log -no-reboot \
     -bios /usr/share/ovmf/OVMF.fd \
     -netdev tap,id=n0,ifname=tb-boot0,script=no,downscript=no,vnet_hdr=off \
     -device virtio-net-pci,netdev=n0,romfile=,bootindex=1";

/// [`BED_TAP`], deleted when dropped: the bed may stay up for the next test.
struct BedTap;

impl BedTap {
    /// Make it anew, by `sw`, the lab in tb-sw: `Err` (the reason) where the kernel refuses a
    /// tap device.
    fn add(&self, sw: &Lab) -> Result<(), String> {
        let _ = sw.run(&format!("ip link del {BED_TAP}"));
        sw.add_tap_with(BED_TAP_SETUP)
    }
}

impl Drop for BedTap {
    fn drop(&mut self) {
        let _ = netbed::in_ns("tb-sw", "10", "ip")
            .args(["link", "del", BED_TAP])
            .status();
    }
}

/// Boot OVMF's UEFI PXE (then iPXE) on the bed against the service address, `tftpd` started
/// by the command line `tftpd`. Asserts the boot from the console and the session log, and
/// that every session was served from the service address.
fn ovmf_native_pxe_on_the_bed(test: &str, tftpd: &str) {
    require(&["qemu-system-x86_64", "dnsmasq"], &[OVMF, IPXE_EFI]);
    let _guest = one_guest();
    let Some(bed) = netbed::bed(test) else { return };
    // Dropped in reverse: qemu, the tap, the servers, then the bed.
    let mut srv = Lab::in_netns("tb-srv", bed.dir.path());
    let tap = BedTap;
    let mut sw = Lab::in_netns("tb-sw", bed.dir.path());
    if let Err(why) = tap.add(&sw) {
        return skip(test, &why);
    }
    srv.serve(tftpd, 69);
    srv.spawn("dnsmasq", BED_DNSMASQ);
    srv.wait_for_udp_port(67, "dnsmasq");
    let took = sw.boot(BED_QEMU, NATIVE_STAGES);
    eprintln!("OVMF UEFI PXE + iPXE on the bed (`{tftpd}`) booted in {took:.1?}");
    let sessions = sw.sessions(&["ipxe.efi", "boot.ipxe", "stage2.ipxe"]);
    assert_native_transfers(&srv, &sessions, BED_MAX_BLKSIZE);
    let service: IpAddr = netbed::SERVICE_V4.parse().unwrap();
    for s in &sessions {
        assert_eq!(
            s.local.ip().to_canonical(),
            service,
            "a session not served from the asked (service) address: {s}"
        );
    }
}

/// `tftpd` listening on the service address only: its transfers answer from it. Proves the
/// harness (DHCP on the bed, the guest on the bridge) independently of the listener.
#[test]
fn ovmf_native_pxe_on_the_bed_listening_on_the_service_address() {
    ovmf_native_pxe_on_the_bed(
        "ovmf_native_pxe_on_the_bed_listening_on_the_service_address",
        BED_TFTPD_SERVICE,
    );
}

/// `tftpd` on its default wildcard listener: UEFI PXE drops replies that do not come from
/// the address it asked (198.18.0.2), so this needs the listener to answer from the
/// request's destination address, and the session log to name it as `local`.
#[test]
fn ovmf_native_pxe_on_the_bed_wildcard_listener() {
    ovmf_native_pxe_on_the_bed(
        "ovmf_native_pxe_on_the_bed_wildcard_listener",
        BED_TFTPD_WILDCARD,
    );
}
