//! The per-packet code laid out together (`hot-text.ld`, which says why and what it measured):
//! passed to the linker for this crate's examples, and its path handed to the build scripts
//! of crates that depend on this one as `DEP_TFTP_HOT_TEXT_SCRIPT` (the crate documentation,
//! "Laying out the per-packet code"). Only where it applies: Linux with GNU ld or LLD (the
//! toolchain's default linker there, not gold or mold), unless `TFTP_NO_HOT_TEXT=1`.

fn main() {
    println!("cargo::rerun-if-changed=hot-text.ld");
    println!("cargo::rerun-if-env-changed=TFTP_NO_HOT_TEXT");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    let linux = target("CARGO_CFG_TARGET_OS") == "linux";
    let gnu_or_musl = matches!(target("CARGO_CFG_TARGET_ENV").as_str(), "gnu" | "musl");
    // TFTP_NO_HOT_TEXT=1 links without the script: for a linker that rejects it, and for
    // callgrind, which names no function outside `.text` (perf does).
    let opted_out = std::env::var_os("TFTP_NO_HOT_TEXT").is_some_and(|v| v != "0");
    // gold fails on INSERT ("syntax error": tried), and mold was not tried: leave the script
    // out when the flags or the configured linker name either.
    let linker = [target("CARGO_ENCODED_RUSTFLAGS"), target("RUSTC_LINKER")].join(" ");
    let other_linker = linker.contains("gold") || linker.contains("mold");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    if linux && gnu_or_musl && !opted_out && !other_linker {
        let script = std::path::Path::new(&dir).join("hot-text.ld");
        let script = script.display();
        println!("cargo::rustc-link-arg-examples=-Wl,-T,{script}");
        println!("cargo::metadata=script={script}");
    }
}
