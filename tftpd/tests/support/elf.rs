//! Reading tftpd's binary with binutils, for the tests of how it is linked (`hot_text.rs`,
//! `relocations.rs`).

use std::process::Command;

/// `tool args`'s standard output; panics when the tool is missing or fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (binutils) is needed to read tftpd's binary: {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address range of section `name` in `bin`, if it has one.
pub fn section(bin: &str, name: &str) -> Option<std::ops::Range<u64>> {
    // [Nr] Name Type Address Off Size ...
    let sections = run("readelf", &["-S", "-W", bin]);
    sections.lines().find_map(|l| {
        let l = l.split(']').nth(1)?;
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| {
            let start = u64::from_str_radix(f[2], 16).unwrap();
            let size = u64::from_str_radix(f[4], 16).unwrap();
            start..start + size
        })
    })
}
