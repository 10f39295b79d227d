//! Lays tftpd's per-packet code out together (`hot-text.ld`, which says why and what it
//! measured) when its binaries are linked for Linux with GNU ld or LLD (the toolchain's
//! default there). Other targets link as before.

fn main() {
    println!("cargo::rerun-if-changed=hot-text.ld");
    println!("cargo::rerun-if-env-changed=TFTPD_NO_HOT_TEXT");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let gnu_or_musl =
        std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "gnu" || e == "musl");
    // TFTPD_NO_HOT_TEXT=1 cargo build ... links without the script: for a linker that
    // rejects it, and for callgrind, which names no function outside `.text` (perf does).
    let opted_out = std::env::var_os("TFTPD_NO_HOT_TEXT").is_some_and(|v| v != "0");
    if linux && gnu_or_musl && !opted_out {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{dir}/hot-text.ld");
    }
}
