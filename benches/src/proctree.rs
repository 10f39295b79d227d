//! CPU time and memory of a process *tree* from `/proc` (Linux).
//!
//! tftpd-hpa forks one process per transfer and atftpd starts a thread per transfer, so "the
//! server's" CPU time and memory are sums over the listener and all its descendants.
//!
//! CPU: `utime + stime + cutime + cstime` of every live process in the tree. A child that
//! exits and is reaped moves its time into its parent's `cutime`/`cstime`, so the total only
//! grows and the difference between two snapshots is the tree's CPU time in between, exact
//! as long as every process waits for its children. A process that ignores `SIGCHLD` (as
//! tftpd-hpa's listener does) has its children reaped by the kernel and their CPU time is
//! lost; for such servers put the server in a cgroup of its own and pass it as `cgroup`: its
//! CPU counter (`cpuacct.usage` in cgroup v1, `cpu.stat` `usage_usec` in v2) includes every
//! process that ever ran in it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

/// One snapshot of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TreeSnapshot {
    /// Live processes in the tree (the root included).
    pub procs: usize,
    /// Threads over all those processes.
    pub threads: u64,
    /// CPU seconds (user + system): from the cgroup when one is given, else of the live
    /// processes and their waited-for children.
    pub cpu_secs: f64,
    /// Where `cpu_secs` comes from: "cgroup" or "proc".
    pub cpu_source: &'static str,
    /// Sum of resident set sizes, KiB (counts pages shared between processes once per process).
    pub rss_kib: u64,
    /// Sum of proportional set sizes, KiB (shared pages divided among the sharers), when asked.
    pub pss_kib: Option<u64>,
}

#[derive(Debug)]
struct ProcStat {
    ppid: u32,
    threads: u64,
    ticks: u64,
    rss_pages: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_kib() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 / 1024 } else { 4 }
}

/// Parse `/proc/PID/stat`. The command name is in parentheses and may contain anything, so
/// fields are counted from the last `)`.
fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(ProcStat {
        ppid: num(4)? as u32,
        ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        threads: num(20)?,
        rss_pages: num(24)?,
    })
}

fn read_pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// All live processes whose ancestry leads to `root`, `root` first.
fn tree_pids(root: u32) -> io::Result<Vec<(u32, ProcStat)>> {
    let mut all: HashMap<u32, ProcStat> = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(st) = read_stat(pid) {
            all.insert(pid, st);
        }
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, st) in &all {
        children.entry(st.ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some(st) = all.remove(&pid) {
            out.push((pid, st));
            if let Some(c) = children.get(&pid) {
                stack.extend(c);
            }
        }
    }
    Ok(out)
}

/// CPU seconds consumed by every process that ever ran in the cgroup directory `dir`
/// (cgroup v1 `cpuacct.usage` in ns, or cgroup v2 `cpu.stat` `usage_usec`).
pub fn cgroup_cpu_secs(dir: &Path) -> io::Result<f64> {
    if let Ok(ns) = fs::read_to_string(dir.join("cpuacct.usage")) {
        return ns
            .trim()
            .parse::<u64>()
            .map(|ns| ns as f64 / 1e9)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    }
    let stat = fs::read_to_string(dir.join("cpu.stat"))?;
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us as f64 / 1e6)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no usage_usec in cpu.stat"))
}

/// Snapshot the tree rooted at `root`. `pss` also reads `smaps_rollup` (slower: it walks the
/// page tables of every process). CPU time comes from `cgroup` when given (see the module
/// docs). Fails if `root` is gone.
pub fn snapshot(root: u32, pss: bool, cgroup: Option<&Path>) -> io::Result<TreeSnapshot> {
    let procs = tree_pids(root)?;
    if procs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {root} is gone"),
        ));
    }
    let hz = clock_ticks();
    let kib = page_kib();
    let mut snap = TreeSnapshot {
        procs: procs.len(),
        ..Default::default()
    };
    let mut ticks = 0u64;
    let mut pss_sum = 0u64;
    for (pid, st) in &procs {
        ticks += st.ticks;
        snap.threads += st.threads;
        snap.rss_kib += st.rss_pages * kib;
        if pss {
            pss_sum += read_pss_kib(*pid).unwrap_or(0);
        }
    }
    match cgroup {
        Some(dir) => {
            snap.cpu_secs = cgroup_cpu_secs(dir)?;
            snap.cpu_source = "cgroup";
        }
        None => {
            snap.cpu_secs = ticks as f64 / hz;
            snap.cpu_source = "proc";
        }
    }
    snap.pss_kib = pss.then_some(pss_sum);
    Ok(snap)
}

/// Peaks and CPU delta of a tree over a measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TreeUsage {
    /// The root process.
    pub pid: u32,
    /// CPU seconds used by the tree between the first and the last snapshot.
    pub cpu_secs: f64,
    /// Where the CPU time comes from: "cgroup" or "proc".
    pub cpu_source: &'static str,
    /// Largest sum of RSS seen, KiB.
    pub peak_rss_kib: u64,
    /// Largest sum of PSS seen, KiB (when sampled).
    pub peak_pss_kib: Option<u64>,
    /// Most processes seen at once.
    pub peak_procs: usize,
    /// Most threads seen at once.
    pub peak_threads: u64,
    /// Snapshots taken.
    pub samples: u64,
}

impl TreeUsage {
    /// Start accounting from snapshot `first`.
    pub fn new(pid: u32, first: &TreeSnapshot) -> Self {
        let mut u = TreeUsage {
            pid,
            cpu_secs: -first.cpu_secs,
            cpu_source: first.cpu_source,
            ..Default::default()
        };
        u.add(first);
        u
    }

    /// Fold in a snapshot (peaks only).
    pub fn add(&mut self, s: &TreeSnapshot) {
        self.samples += 1;
        self.peak_rss_kib = self.peak_rss_kib.max(s.rss_kib);
        self.peak_procs = self.peak_procs.max(s.procs);
        self.peak_threads = self.peak_threads.max(s.threads);
        if let Some(p) = s.pss_kib {
            self.peak_pss_kib = Some(self.peak_pss_kib.unwrap_or(0).max(p));
        }
    }

    /// Fold in the last snapshot and close the CPU window.
    pub fn finish(&mut self, last: &TreeSnapshot) {
        self.add(last);
        self.cpu_secs += last.cpu_secs;
    }
}
