//! tftpd's per-packet code laid out together: tftp-blocking's `hot-text.ld` (which says why
//! and what it measured), whose path tftp-blocking's build script hands over where it applies
//! (Linux, GNU ld or LLD, not `TFTP_NO_HOT_TEXT=1`), passed to the linker for tftpd's binaries.

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_TFTP_HOT_TEXT_SCRIPT");
    // tests/hot_text.rs checks the layout wherever the script is passed.
    println!("cargo::rustc-check-cfg=cfg(tftp_hot_text)");
    if let Ok(script) = std::env::var("DEP_TFTP_HOT_TEXT_SCRIPT") {
        println!("cargo::rustc-link-arg-bins=-Wl,-T,{script}");
        println!("cargo::rustc-cfg=tftp_hot_text");
    }
}
