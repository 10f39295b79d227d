//! Man pages and shell completions generated from the binaries' clap definitions, for
//! packaging (`scripts/build-deb.sh` runs it):
//!
//! ```text
//! cargo run -p tftpd --example gen-docs -- OUT_DIR
//! ```
//!
//! writes `OUT_DIR/man/tftpd.8`, `OUT_DIR/man/tftp-rs.1` and, for both, bash, zsh and fish
//! completions under `OUT_DIR/completions/`. The client is documented under `tftp-rs`, the
//! name the .deb installs it as (tftp-hpa owns `/usr/bin/tftp`).
//!
//! The binaries' files are compiled in here as modules, so the `Args` structs stay where
//! they are; an example rather than a build script or a binary: normal builds never pay
//! for it, and it is not installed.

// deny, not forbid: tftpd.rs, compiled in below, allows the `no_mangle` of its math functions.
#![deny(unsafe_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[allow(dead_code, unused_imports)]
#[path = "../src/bin/tftpd.rs"]
mod tftpd_bin;

#[allow(dead_code, unused_imports)]
#[path = "../src/bin/tftp.rs"]
mod tftp_bin;

/// Appended to tftpd(8): what the generated sections cannot know.
const TFTPD_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/tftpd.toml\fR
Settings read by \fBtftpd.service\fR (\fB\-\-config\fR): the long flag names as keys.
.TP
\fI/usr/lib/systemd/system/tftpd.socket\fR, \fItftpd.service\fR
Socket activation on port 69: \fBsystemctl enable \-\-now tftpd.socket\fR.
.TP
\fI/var/log/tftpd/\fR
Where the service may write its \fB\-\-session\-log\fR.
.SH SIGNALS
SIGHUP re\-reads \fB\-\-config\fR and reopens the session log; transfers in flight finish on
the old configuration. SIGTERM and SIGINT drain (up to \fB\-\-shutdown\-grace\fR).
.SH SEE ALSO
\fBtftp\-rs\fR(1), \fBsystemd.socket\fR(5), \fBsd_notify\fR(3)
"#;

const TFTP_EXTRA: &str = r#".SH SEE ALSO
\fBtftpd\fR(8), \fBcurl\fR(1)
"#;

fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, contents)
}

fn man(cmd: clap::Command, section: &str, extra: &str) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .render(&mut out)?;
    out.write_all(extra.as_bytes())?;
    Ok(out)
}

fn completions(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    for (shell, file) in [
        (Shell::Bash, format!("bash/{name}")),
        (Shell::Zsh, format!("zsh/_{name}")),
        (Shell::Fish, format!("fish/{name}.fish")),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), name, &mut out);
        write(&dir.join(file), &out)?;
    }
    Ok(())
}

fn generate(out: &Path) -> std::io::Result<()> {
    let tftpd = tftpd_bin::Args::command().name("tftpd").bin_name("tftpd");
    let tftp = tftp_bin::Args::command()
        .name("tftp-rs")
        .bin_name("tftp-rs");
    write(
        &out.join("man/tftpd.8"),
        &man(tftpd.clone(), "8", TFTPD_EXTRA)?,
    )?;
    write(
        &out.join("man/tftp-rs.1"),
        &man(tftp.clone(), "1", TFTP_EXTRA)?,
    )?;
    completions(&tftpd, "tftpd", &out.join("completions"))?;
    completions(&tftp, "tftp-rs", &out.join("completions"))?;
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUT_DIR");
        return ExitCode::from(64);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-docs: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
