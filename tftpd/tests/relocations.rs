//! tftpd's relative relocations are packed (DT_RELR) where `tftpd/build.rs` asks the linker
//! to (glibc 2.36 or later on the building machine, or `TFTP_RELR=1`): what stays of the
//! 24-byte RELA table is the few relocations RELR cannot express, and the binary names the
//! glibc version it needs, so an older loader refuses it by that name.

// Built only where tftpd/build.rs passes the flag (it sets the cfg then).
#![cfg(tftp_relr)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/elf.rs"]
mod elf;

fn readelf(args: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_tftpd");
    elf::run("readelf", &[args, &[bin]].concat())
}

/// The size of section `name`, if the binary has it.
fn section_size(name: &str) -> Option<u64> {
    elf::section(env!("CARGO_BIN_EXE_tftpd"), name).map(|range| range.end - range.start)
}

#[test]
fn relative_relocations_are_packed() {
    let dynamic = readelf(&["-d", "-W"]);
    assert!(
        dynamic.contains("(RELR)"),
        "no DT_RELR entry: the linker ignored -z pack-relative-relocs\n{dynamic}"
    );
    let relr = section_size(".relr.dyn").expect("a .relr.dyn section");
    // As RELA, tftpd's ~14,500 relative relocations took 348 KB.
    let rela = section_size(".rela.dyn").unwrap_or(0);
    assert!(
        rela < 16 * 1024,
        ".rela.dyn is {rela} bytes: relative relocations left unpacked"
    );
    assert!(relr < 16 * 1024, ".relr.dyn is {relr} bytes");
}

#[test]
fn the_binary_names_the_glibc_it_needs() {
    let versions = readelf(&["-V", "-W"]);
    assert!(
        versions.contains("GLIBC_ABI_DT_RELR"),
        "tftpd uses DT_RELR without requiring GLIBC_ABI_DT_RELR: an older glibc would run it \
         unrelocated\n{versions}"
    );
}
