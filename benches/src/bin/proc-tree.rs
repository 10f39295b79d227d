//! `proc-tree PID [--pss] [--cgroup DIR]`: one JSON snapshot of a process tree (the process and all its
//! descendants): live processes, threads, CPU seconds (reaped children included) and summed
//! RSS (and PSS with `--pss`). The e2e script takes one before and one after a transfer made
//! by an outside client (curl, atftp) to get the server's CPU time for it. With `--cgroup`,
//! CPU time is read from that cgroup, which also counts children reaped by the kernel.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tftp_benches::proctree;

fn main() -> Result<()> {
    let mut pid = None;
    let mut pss = false;
    let mut cgroup: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pss" => pss = true,
            "--cgroup" => cgroup = args.next().map(PathBuf::from),
            a => {
                pid = Some(
                    a.parse::<u32>()
                        .with_context(|| format!("not a pid: {a}"))?,
                )
            }
        }
    }
    let Some(pid) = pid else {
        bail!("usage: proc-tree PID [--pss] [--cgroup DIR]");
    };
    let snap = proctree::snapshot(pid, pss, cgroup.as_deref())?;
    println!("{}", serde_json::to_string(&snap)?);
    Ok(())
}
