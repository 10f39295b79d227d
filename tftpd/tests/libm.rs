//! tftpd defines the C math functions its dependencies call (`libm_functions` in
//! src/bin/tftpd.rs), so that it does not load glibc's libm.so: 166 kB of it stayed resident
//! in every tftpd, for five functions that a default tftpd never calls. A dependency that
//! starts calling another function of libm brings libm.so back; this says which function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/elf.rs"]
#[allow(dead_code)]
mod elf;

use elf::run;

#[test]
fn tftpd_does_not_load_libm() {
    let bin = env!("CARGO_BIN_EXE_tftpd");
    let dynamic = run("readelf", &["-d", "-W", bin]);
    if !dynamic.contains("libm.so") {
        return;
    }
    // Which of the binary's undefined symbols libm.so defines.
    let libm = dynamic_library(bin, "libm.so");
    let defined = run("nm", &["-D", "--defined-only", &libm]);
    let defined: Vec<&str> = defined
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s))
        .collect();
    let undefined = run("nm", &["-D", "--undefined-only", bin]);
    let from_libm: Vec<&str> = undefined
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s))
        .filter(|s| defined.contains(s))
        .collect();
    panic!(
        "tftpd needs libm.so again, for {from_libm:?}: define them in `libm_functions` \
         (src/bin/tftpd.rs) from the `libm` crate, as the others"
    );
}

/// The path the loader finds `name` at for `bin` (`ldd`).
fn dynamic_library(bin: &str, name: &str) -> String {
    let ldd = run("ldd", &[bin]);
    ldd.lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split("=>").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .expect("ldd names the library")
        .to_owned()
}
