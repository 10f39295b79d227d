//! `e2e-report RESULTS.jsonl OUTDIR`: turn the raw measurements of `benches/e2e/run.sh` into
//! medians, one table per test with ratios against tftpd-hpa, and `summary.json` /
//! `summary.csv` / `table.txt` in OUTDIR.
//!
//! Each input line is one measurement:
//! `{"test":..,"config":..,"server":..,"rep":N,"metrics":[["name",value],..],"ref_config":..}`
//! (metrics as pairs so their order, which is the order of the rows, survives).
//! Rows are (test, config, metric); columns are servers in order of first appearance. A cell
//! is the median over repetitions, followed by the ratio to tftpd-hpa's median for the same
//! row, or for `ref_config` when tftpd-hpa has no value for this config (marked `*`: e.g. a
//! windowsize that tftpd-hpa does not support is compared with its windowsize 1). Rows of
//! the metrics `failed` and `resends` are left out of the table while they are zero
//! everywhere.
//!
//! Where the kernel floor (`tftp-floor`, column `floor`) was measured, a last column gives
//! tftpd's ratio to it. After the tables, the performance issue's targets are checked against
//! the medians of this run, one PASS/FAIL/n/a line each (n/a: a number is missing). Where a
//! floor was measured (lock-step: `floor`; concurrency: `tftp-floor --concurrent`, column
//! `floor-epoll`, on io_uring `floor-uring`), a FLOOR line per target against a peer and floor
//! says whether the target lies within or beyond what that floor reaches against the same peer
//! in the same run.
//! Where tftpd ran in single-port mode too (column `tftpd-sp`), the concurrency targets are
//! checked for it as well, with its own floor (`floor-single`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The server every ratio is taken against.
const BASELINE: &str = "tftpd-hpa";
/// The concurrency rows' test.
const CONC: &str = "concurrency";
/// Metrics shown only when some value is not zero.
const HIDE_IF_ZERO: &[&str] = &["failed", "resends"];
/// Our server, whose targets are checked.
const TFTPD: &str = "tftpd";
/// Our blocking server: within 10% of tftpd on every row.
const BLOCKING: &str = "tftpd-blocking";
/// The kernel floor (`tftp-floor`): lock-step rows only.
const FLOOR: &str = "floor";
/// The concurrency rows' floor (`tftp-floor --concurrent`): every transfer on one epoll
/// thread, one `recvfrom` and one `sendmsg` a packet, nothing else.
const FLOOR_EPOLL: &str = "floor-epoll";
/// The same floor on io_uring (`tftp-floor --concurrent --connected --uring`).
const FLOOR_URING: &str = "floor-uring";
/// tftpd in single-port mode (`--single-port`: every transfer on the listener, batched).
const TFTPD_SP: &str = "tftpd-sp";
/// Its floor (`tftp-floor --concurrent --single-port`): one `recvmmsg` and one `sendmmsg`
/// for many transfers' packets, nothing else.
const FLOOR_SINGLE: &str = "floor-single";
/// Columns that are not peers of tftpd in the targets: ours, the floor, the UDP ceiling.
fn is_peer(server: &str) -> bool {
    !(server == TFTPD
        || server == BLOCKING
        || server == FLOOR
        || server == FLOOR_EPOLL
        || server == FLOOR_URING
        || server == FLOOR_SINGLE
        || server == TFTPD_SP
        || server == "udp"
        || server.starts_with("tftpd ")
        || server.starts_with("tftpd-compare"))
}

/// Which way a metric is better: Some(true) higher, Some(false) lower, None: it does not rank
/// servers (the load client's own CPU, the proxy's drops, the origin storm's volumes).
fn higher_is_better(metric: &str) -> Option<bool> {
    match metric {
        "mb_per_sec" | "sessions_per_sec" | "datagrams_per_sec" => Some(true),
        "failed"
        | "failures"
        | "resends"
        | "cpu_ms_per_mb"
        | "p50_ms"
        | "p99_ms"
        | "max_ms"
        | "retransmissions"
        | "wall_secs"
        | "server_cpu_secs"
        | "server_cpu_ms_per_mb"
        | "server_peak_rss_mib"
        | "server_peak_pss_mib"
        | "server_peak_procs_or_threads"
        | "secs"
        | "server_retransmissions"
        | "client_retransmissions" => Some(false),
        _ => None,
    }
}

/// How much worse `ours` is than `theirs`: the rate ratio theirs/ours for higher-is-better
/// metrics, the cost ratio ours/theirs otherwise; 1 when equal, above 1 when worse.
fn worse_by(ours: f64, theirs: f64, higher: bool) -> f64 {
    let (num, den) = if higher {
        (theirs, ours)
    } else {
        (ours, theirs)
    };
    if num == den {
        1.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Fail,
    NotAvailable,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotAvailable => "n/a",
        }
    }
}

/// `ours / theirs` against a bound: at least `min` or at most `max`.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    /// How the bound reads in a target line: "≥ 1.00×", "≤ 0.85×".
    fn text(self) -> String {
        match self {
            Bound::AtLeast(b) => format!("≥ {b:.2}×"),
            Bound::AtMost(b) => format!("≤ {b:.2}×"),
        }
    }
}

/// The lock-step targets against tftpd-hpa, each `(test, metric, label, bound)`: checked for
/// tftpd, and against the floor (FLOOR lines).
const LOCK_STEP_TARGETS: [(&str, &str, &str, Bound); 2] = [
    ("throughput", "mb_per_sec", "MB/s", Bound::AtLeast(1.0)),
    (
        "server-cpu-per-mb",
        "cpu_ms_per_mb",
        "CPU/MB",
        Bound::AtMost(0.85),
    ),
];

/// The concurrency targets against dnsmasq, each `(metric, label, bound)`: checked for tftpd
/// and tftpd-sp, and against their floors (FLOOR lines).
const CONCURRENCY_TARGETS: [(&str, &str, Bound); 2] = [
    ("sessions_per_sec", "sessions/s", Bound::AtLeast(1.2)),
    ("server_cpu_ms_per_mb", "CPU/MB", Bound::AtMost(0.8)),
];

/// One target line: the verdict, what is checked, the numbers.
fn ratio_line(
    out: &mut String,
    what: &str,
    ours: Option<f64>,
    theirs: Option<f64>,
    their_name: &str,
    bound: Bound,
) -> Verdict {
    ratio_line_of(out, what, TFTPD, ours, theirs, their_name, bound)
}

/// [`ratio_line`] for our server `our_name` (tftpd, or tftpd in single-port mode).
fn ratio_line_of(
    out: &mut String,
    what: &str,
    our_name: &str,
    ours: Option<f64>,
    theirs: Option<f64>,
    their_name: &str,
    bound: Bound,
) -> Verdict {
    let (verdict, detail) = match (ours, theirs) {
        (Some(o), Some(t)) if t != 0.0 => {
            let r = o / t;
            let ok = match bound {
                Bound::AtLeast(b) => r >= b,
                Bound::AtMost(b) => r <= b,
            };
            let v = if ok { Verdict::Pass } else { Verdict::Fail };
            (
                v,
                format!(
                    "{our_name} {} / {their_name} {} = ×{r:.2}",
                    fmt_value(o),
                    fmt_value(t)
                ),
            )
        }
        _ => (
            Verdict::NotAvailable,
            format!(
                "{our_name} {}, {their_name} {}",
                ours.map_or("missing".into(), fmt_value),
                theirs.map_or("missing".into(), fmt_value)
            ),
        ),
    };
    let _ = writeln!(out, "{:4}  {what}  ({detail})", verdict.label());
    verdict
}

#[derive(Debug, Deserialize)]
struct Record {
    test: String,
    config: String,
    server: String,
    #[serde(default)]
    rep: Option<u32>,
    #[serde(default)]
    ref_config: Option<String>,
    metrics: Vec<(String, Option<f64>)>,
}

impl Record {
    /// Metric `name`'s value, if it was measured.
    fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(m, _)| m == name)
            .and_then(|(_, v)| *v)
    }
}

#[derive(Debug, Serialize)]
struct Row {
    test: String,
    config: String,
    metric: String,
    server: String,
    n: usize,
    median: f64,
    min: f64,
    max: f64,
    /// median / tftpd-hpa's median (same config, or ref_config).
    ratio_vs_baseline: Option<f64>,
    /// The tftpd-hpa config the ratio was taken against, when not the same.
    baseline_config: Option<String>,
    /// median / the kernel floor's median (same config), where the floor was measured.
    ratio_vs_floor: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, outdir] = args.as_slice() else {
        bail!("usage: e2e-report RESULTS.jsonl OUTDIR");
    };
    let outdir = PathBuf::from(outdir);
    let text = fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record =
            serde_json::from_str(line).with_context(|| format!("{input}:{}: bad record", i + 1))?;
        records.push(r);
    }

    // Order of first appearance, for tests, configs, metrics and servers.
    let mut tests: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    let mut rows_order: Vec<(String, String, String)> = Vec::new();
    let mut values: BTreeMap<(String, String, String, String), Vec<f64>> = BTreeMap::new();
    let mut refs: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in &records {
        if !tests.contains(&r.test) {
            tests.push(r.test.clone());
        }
        if !servers.contains(&r.server) {
            servers.push(r.server.clone());
        }
        if let Some(rc) = &r.ref_config {
            refs.insert((r.test.clone(), r.config.clone()), rc.clone());
        }
        for (metric, v) in &r.metrics {
            let row = (r.test.clone(), r.config.clone(), metric.clone());
            if !rows_order.contains(&row) {
                rows_order.push(row);
            }
            let cell = values
                .entry((
                    r.test.clone(),
                    r.config.clone(),
                    metric.clone(),
                    r.server.clone(),
                ))
                .or_default();
            if let Some(v) = v {
                cell.push(*v);
            }
        }
    }
    let mut medians: BTreeMap<(String, String, String, String), f64> = BTreeMap::new();
    let mut rows: Vec<Row> = Vec::new();
    for ((test, config, metric, server), v) in &values {
        let mut v = v.clone();
        if v.is_empty() {
            continue;
        }
        let (min, max) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        let m = median(&mut v);
        medians.insert(
            (test.clone(), config.clone(), metric.clone(), server.clone()),
            m,
        );
        rows.push(Row {
            test: test.clone(),
            config: config.clone(),
            metric: metric.clone(),
            server: server.clone(),
            n: v.len(),
            median: m,
            min,
            max,
            ratio_vs_baseline: None,
            baseline_config: None,
            ratio_vs_floor: None,
        });
    }
    let baseline = |test: &str, config: &str, metric: &str| -> Option<(f64, Option<String>)> {
        let key = |c: &str| {
            (
                test.to_string(),
                c.to_string(),
                metric.to_string(),
                BASELINE.to_string(),
            )
        };
        if let Some(m) = medians.get(&key(config)) {
            return Some((*m, None));
        }
        let rc = refs.get(&(test.to_string(), config.to_string()))?;
        medians.get(&key(rc)).map(|m| (*m, Some(rc.clone())))
    };
    for row in &mut rows {
        if let Some((b, rc)) = baseline(&row.test, &row.config, &row.metric)
            && b != 0.0
            && b.is_finite()
        {
            row.ratio_vs_baseline = Some(row.median / b);
            row.baseline_config = rc;
        }
        let floor_key = (
            row.test.clone(),
            row.config.clone(),
            row.metric.clone(),
            FLOOR.to_string(),
        );
        if let Some(f) = medians.get(&floor_key)
            && *f != 0.0
            && f.is_finite()
        {
            row.ratio_vs_floor = Some(row.median / f);
        }
    }

    // The table.
    let mut table = String::new();
    for test in &tests {
        let test_servers: Vec<&String> = servers
            .iter()
            .filter(|s| rows.iter().any(|r| &r.test == test && &r.server == *s))
            .collect();
        let all_zero = |(t, c, m): &&(String, String, String)| {
            HIDE_IF_ZERO.contains(&m.as_str())
                && rows
                    .iter()
                    .filter(|r| &r.test == t && &r.config == c && &r.metric == m)
                    .all(|r| r.max == 0.0)
        };
        let test_rows: Vec<&(String, String, String)> = rows_order
            .iter()
            .filter(|(t, _, _)| t == test)
            .filter(|row| !all_zero(row))
            .collect();
        let label_w = test_rows
            .iter()
            .map(|(_, c, m)| c.len() + m.len() + 3)
            .max()
            .unwrap_or(10)
            .max(12);
        let col_w = 20usize;
        // tftpd's ratio to the kernel floor, where both were measured (lock-step rows).
        let floor_col = [TFTPD, FLOOR]
            .iter()
            .all(|n| test_servers.iter().any(|s| s.as_str() == *n));
        let _ = write!(table, "\n== {test} (median; ×ratio vs {BASELINE}");
        if floor_col {
            let _ = write!(table, "; last column: {TFTPD}'s ×ratio vs {FLOOR}");
        }
        let _ = writeln!(table, ")");
        let _ = write!(table, "{:label_w$}", "config / metric");
        for s in &test_servers {
            let _ = write!(table, " {s:>col_w$}");
        }
        if floor_col {
            let _ = write!(table, " {:>12}", format!("{TFTPD}/{FLOOR}"));
        }
        let _ = writeln!(table);
        for (t, config, metric) in test_rows {
            let _ = write!(table, "{:label_w$}", format!("{config} | {metric}"));
            for s in &test_servers {
                let key = (t.clone(), config.clone(), metric.clone(), (*s).clone());
                let cell = match medians.get(&key) {
                    None => "n/a".to_string(),
                    Some(m) if s.as_str() == BASELINE => fmt_value(*m),
                    Some(m) => match baseline(t, config, metric) {
                        Some((b, rc)) if b != 0.0 && b.is_finite() => format!(
                            "{} ×{:.2}{}",
                            fmt_value(*m),
                            m / b,
                            if rc.is_some() { "*" } else { "" }
                        ),
                        _ => fmt_value(*m),
                    },
                };
                let _ = write!(table, " {cell:>col_w$}");
            }
            if floor_col {
                let ours = medians.get(&(t.clone(), config.clone(), metric.clone(), TFTPD.into()));
                let floor = medians.get(&(t.clone(), config.clone(), metric.clone(), FLOOR.into()));
                let cell = match (ours, floor) {
                    (Some(o), Some(f)) if *f != 0.0 && f.is_finite() => format!("×{:.2}", o / f),
                    _ => String::new(),
                };
                let _ = write!(table, " {cell:>12}");
            }
            let _ = writeln!(table);
        }
    }
    if rows.iter().any(|r| r.baseline_config.is_some()) {
        let _ = writeln!(
            table,
            "\n* ratio against tftpd-hpa in a comparable config it supports (see baseline_config in summary.csv)"
        );
    }
    targets(&mut table, &records, &rows, &rows_order, &medians, &servers);
    repetitions(&mut table, &records);
    print!("{table}");

    fs::create_dir_all(&outdir)?;
    fs::write(outdir.join("table.txt"), &table)?;
    fs::write(
        outdir.join("summary.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    let mut csv = String::from(
        "test,config,metric,server,n,median,min,max,ratio_vs_tftpd_hpa,baseline_config,ratio_vs_floor\n",
    );
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&r.test),
            csv_field(&r.config),
            csv_field(&r.metric),
            csv_field(&r.server),
            r.n,
            r.median,
            r.min,
            r.max,
            r.ratio_vs_baseline
                .map(|x| x.to_string())
                .unwrap_or_default(),
            csv_field(r.baseline_config.as_deref().unwrap_or("")),
            r.ratio_vs_floor.map(|x| x.to_string()).unwrap_or_default(),
        );
    }
    fs::write(outdir.join("summary.csv"), csv)?;
    Ok(())
}

type Key = (String, String, String, String);

/// The concurrency rows' repetitions one by one, in the order they ran, when there were
/// several: the medians hide how far one repetition strays (a noisy minute of the machine, a
/// server run right after another's failing clients), which is what to look at before
/// believing a ratio.
fn repetitions(out: &mut String, records: &[Record]) {
    let conc: Vec<&Record> = records.iter().filter(|r| r.test == CONC).collect();
    if !conc.iter().any(|r| r.rep.is_some_and(|n| n > 1)) {
        return;
    }
    let _ = writeln!(
        out,
        "\n== {CONC}, per repetition in the order run (sessions/s, server CPU ms per MB, load client CPU s, wall s)"
    );
    let width = conc.iter().map(|r| r.config.len()).max().unwrap_or(0);
    for r in conc {
        let metric = |name: &str| {
            r.metric(name)
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
        };
        let _ = writeln!(
            out,
            "{:width$}  {:14} r{}: {:>9} s/s {:>8} ms/MB  client {:>7} s  wall {:>7} s",
            r.config,
            r.server,
            r.rep.map_or_else(|| "?".to_string(), |n| n.to_string()),
            metric("sessions_per_sec"),
            metric("server_cpu_ms_per_mb"),
            metric("client_cpu_secs"),
            metric("wall_secs"),
        );
    }
}

/// The performance issue's targets, from this run's medians: one line each, PASS, FAIL or n/a
/// (a number is missing: never PASS).
fn targets(
    out: &mut String,
    records: &[Record],
    rows: &[Row],
    rows_order: &[(String, String, String)],
    medians: &BTreeMap<Key, f64>,
    servers: &[String],
) {
    let med = |test: &str, config: &str, metric: &str, server: &str| -> Option<f64> {
        let key = (test.into(), config.into(), metric.into(), server.into());
        medians.get(&key).copied().filter(|m| m.is_finite())
    };
    let worst = |test: &str, config: &str, metric: &str, server: &str| -> Option<f64> {
        rows.iter()
            .find(|r| {
                r.test == test && r.config == config && r.metric == metric && r.server == server
            })
            .map(|r| r.max)
    };
    // The rows the specific targets cover; every other row gets the 5% rule.
    let mut covered: Vec<(String, String, String)> = Vec::new();
    let _ = writeln!(out, "\n== targets (this run's medians; n/a: not measured)");

    // Lock-step with curl at 512 and 1468: throughput and CPU against tftpd-hpa and the floor.
    for bs in [512, 1468] {
        for mode in ["unpinned", "pinned"] {
            let config = format!("bs={bs} ws=1 curl {mode}");
            let value = |test: &str, metric: &str, s: &str| med(test, &config, metric, s);
            let what = |w: &str| format!("lock-step {config}: {w}");
            for (test, metric, label, bound) in LOCK_STEP_TARGETS {
                ratio_line(
                    out,
                    &what(&format!("tftpd {label} {} tftpd-hpa", bound.text())),
                    value(test, metric, TFTPD),
                    value(test, metric, BASELINE),
                    BASELINE,
                    bound,
                );
            }
            let cpu = |s: &str| value("server-cpu-per-mb", "cpu_ms_per_mb", s);
            ratio_line(
                out,
                &what("tftpd CPU/MB ≤ 1.15× floor"),
                cpu(TFTPD),
                cpu(FLOOR),
                FLOOR,
                Bound::AtMost(1.15),
            );
            // Whether the floor itself meets the targets against tftpd-hpa in this run.
            for (test, metric, label, bound) in LOCK_STEP_TARGETS {
                floor_line(
                    out,
                    &what,
                    label,
                    bound,
                    (FLOOR, value(test, metric, FLOOR)),
                    (BASELINE, value(test, metric, BASELINE)),
                    (TFTPD, value(test, metric, TFTPD)),
                );
            }
            for (test, metric, _, _) in LOCK_STEP_TARGETS {
                covered.push((test.into(), config.clone(), metric.into()));
            }
        }
    }

    // Concurrency, 1,000 and 10,000 clients all at once (from one address with the limits
    // lifted, and from many at default limits): against dnsmasq, and no failure.
    for n in [1000, 10000] {
        let configs: Vec<&String> = rows_order
            .iter()
            .filter(|(t, _, _)| t == CONC)
            .map(|(_, c, _)| c)
            .filter(|c| {
                let mut words = c.split_whitespace();
                words.next() == Some(format!("clients={n}").as_str()) && !c.contains("ramp=")
            })
            .fold(Vec::new(), |mut v, c| {
                if !v.contains(&c) {
                    v.push(c);
                }
                v
            });
        if configs.is_empty() {
            let _ = writeln!(out, "n/a   concurrency clients={n}: not measured");
        }
        for config in configs {
            let what = |w: &str| format!("concurrency {config}: {w}");
            let m = |metric: &str, s: &str| med(CONC, config, metric, s);
            // tftpd, and where it ran, tftpd in single-port mode.
            for ours in [TFTPD, TFTPD_SP] {
                if ours != TFTPD && rows.iter().all(|r| r.server != ours) {
                    continue;
                }
                concurrency_lines(out, records, &what, &m, &worst, config, ours);
            }
            let metrics = CONCURRENCY_TARGETS.map(|(metric, _, _)| metric);
            for metric in metrics.into_iter().chain(["failures"]) {
                covered.push((CONC.into(), config.clone(), metric.into()));
            }
        }
    }

    // Every other row: no peer ahead of tftpd by more than 5%.
    let (mut compared, mut missing, mut behind) = (0usize, 0usize, Vec::new());
    for (t, c, m) in rows_order {
        let Some(higher) = higher_is_better(m) else {
            continue;
        };
        if covered.iter().any(|k| (&k.0, &k.1, &k.2) == (t, c, m)) {
            continue;
        }
        // A peer that failed sessions of this config did not do the same work: its time,
        // memory and latency there are not comparable (atftpd's CPU seconds are zero when
        // it refused every client); its failures row is compared.
        let failed =
            |s: &String| m != "failures" && med(t, c, "failures", s).is_some_and(|f| f > 0.0);
        let peers: Vec<(&String, f64)> = servers
            .iter()
            .filter(|s| is_peer(s) && !failed(s))
            .filter_map(|s| med(t, c, m, s).map(|v| (s, v)))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let Some(ours) = med(t, c, m, TFTPD) else {
            missing += 1;
            continue;
        };
        compared += 1;
        for (s, v) in peers {
            let w = worse_by(ours, v, higher);
            if w > 1.05 {
                behind.push(format!(
                    "{t} | {c} | {m}: {s} {} vs tftpd {} (tftpd worse ×{w:.2})",
                    fmt_value(v),
                    fmt_value(ours)
                ));
            }
        }
    }
    summary_line(
        out,
        "every other row: no peer ahead of tftpd by more than 5%",
        compared,
        missing,
        &behind,
    );

    // The blocking server within 10% of tftpd on every row (not behind by more than 10%),
    // in the tests it took part in.
    let (mut compared, mut missing, mut behind) = (0usize, 0usize, Vec::new());
    for (t, c, m) in rows_order {
        let Some(higher) = higher_is_better(m) else {
            continue;
        };
        let in_test = rows.iter().any(|r| &r.test == t && r.server == BLOCKING);
        match (med(t, c, m, BLOCKING), med(t, c, m, TFTPD)) {
            (Some(b), Some(ours)) => {
                compared += 1;
                let w = worse_by(b, ours, higher);
                if w > 1.10 {
                    behind.push(format!(
                        "{t} | {c} | {m}: {BLOCKING} {} vs tftpd {} (worse ×{w:.2})",
                        fmt_value(b),
                        fmt_value(ours)
                    ));
                }
            }
            (None, None) => {}
            _ if in_test => missing += 1,
            _ => {}
        }
    }
    summary_line(
        out,
        "tftpd-blocking within 10% of tftpd on every row",
        compared,
        missing,
        &behind,
    );
}

/// The concurrency targets of `ours` (tftpd or tftpd-sp) in `config`: sessions/s and CPU per
/// MB against dnsmasq, the floors' verdict on them, and no failures.
fn concurrency_lines(
    out: &mut String,
    records: &[Record],
    what: &dyn Fn(&str) -> String,
    m: &dyn Fn(&str, &str) -> Option<f64>,
    worst: &dyn Fn(&str, &str, &str, &str) -> Option<f64>,
    config: &str,
    ours: &str,
) {
    for (metric, label, bound) in CONCURRENCY_TARGETS {
        ratio_line_of(
            out,
            &what(&format!("{ours} {label} {} dnsmasq", bound.text())),
            ours,
            m(metric, ours),
            m(metric, "dnsmasq"),
            "dnsmasq",
            bound,
        );
        repetition_ratios(out, records, config, metric, ours, "dnsmasq");
    }
    // Where a floor of this mode ran: how far the targets are from what any server of the
    // mode (a port per transfer; one port for all) can reach on this kernel path.
    let floors: &[&str] = if ours == TFTPD_SP {
        &[FLOOR_SINGLE]
    } else {
        &[FLOOR_EPOLL, FLOOR_URING]
    };
    for &floor_name in floors {
        for (metric, label, bound) in CONCURRENCY_TARGETS {
            floor_line(
                out,
                what,
                label,
                bound,
                (floor_name, m(metric, floor_name)),
                ("dnsmasq", m(metric, "dnsmasq")),
                (ours, m(metric, ours)),
            );
        }
    }
    let fails = worst(CONC, config, "failures", ours);
    let verdict = match fails {
        Some(0.0) => Verdict::Pass,
        Some(_) => Verdict::Fail,
        None => Verdict::NotAvailable,
    };
    let detail = fails.map_or("missing".into(), |f| format!("{f:.0}"));
    let _ = writeln!(
        out,
        "{:4}  {}  ({ours} failures: {detail})",
        verdict.label(),
        what(&format!("{ours} failures = 0"))
    );
}

/// Under a concurrency target's line, where the run repeated it: `ours`'s `metric` over
/// `peer`'s, repetition by repetition. run.sh runs the servers of a repetition one after the
/// other, the order reversed in the next, so a repetition's two figures are minutes apart at
/// most, where a VM that changes speed by the minute moves a server's own repetitions by
/// tens of percent (results/2026-12-06-full-run.txt: ×1.47). Nothing with one repetition.
fn repetition_ratios(
    out: &mut String,
    records: &[Record],
    config: &str,
    metric: &str,
    ours: &str,
    peer: &str,
) {
    let of = |server: &str| -> Vec<&Record> {
        let this = |r: &&Record| r.test == CONC && r.config == config && r.server == server;
        records.iter().filter(this).collect()
    };
    let value = |server: &str, rep: u32| {
        of(server)
            .into_iter()
            .filter(|r| r.rep == Some(rep))
            .find_map(|r| r.metric(metric))
    };
    let mut reps: Vec<u32> = of(ours).into_iter().filter_map(|r| r.rep).collect();
    reps.sort_unstable();
    reps.dedup();
    if reps.len() < 2 {
        return;
    }
    let ratios: Vec<String> = reps
        .iter()
        .map(|&rep| match (value(ours, rep), value(peer, rep)) {
            (Some(o), Some(p)) if p != 0.0 => format!("r{rep} ×{:.2}", o / p),
            _ => format!("r{rep} n/a"),
        })
        .collect();
    let _ = writeln!(
        out,
        "        {metric}, {ours} / {peer} in each repetition: {}",
        ratios.join(", ")
    );
}

/// A FLOOR line: whether `target` (ours against `peer`, e.g. CPU/MB ≤ 0.80× dnsmasq) lies
/// within or beyond what the floor `floor` reaches against the same peer in the same run, and
/// where we stand against the floor. A target beyond its floor is one no server of that kind
/// can meet on this kernel path and machine: the "physically impossible", measured.
/// Nothing when the floor or the peer was not measured.
fn floor_line(
    out: &mut String,
    what: &dyn Fn(&str) -> String,
    label: &str,
    target: Bound,
    (floor_name, floor): (&str, Option<f64>),
    (peer_name, peer): (&str, Option<f64>),
    (our_name, ours): (&str, Option<f64>),
) {
    let (Some(floor), Some(peer)) = (floor, peer) else {
        return;
    };
    if floor == 0.0 || peer == 0.0 {
        return;
    }
    let r = floor / peer;
    let (beyond, bound) = match target {
        Bound::AtLeast(b) => (r < b, b),
        Bound::AtMost(b) => (r > b, b),
    };
    let ours = ours.map_or("missing".into(), |o| format!("×{:.2}", o / floor));
    // "the floor-epoll floor", but "the floor" for the lock-step one (named `floor`).
    let the_floor = match floor_name {
        FLOOR => "the floor".to_string(),
        name => format!("the {name} floor"),
    };
    let _ = writeln!(
        out,
        "{:4}  {}  ({floor_name} {} / {peer_name} {} = ×{r:.2}; {our_name} {ours} of {floor_name})",
        "FLOOR",
        what(&format!(
            "{label} ×{bound:.2} {peer_name} is {} {the_floor}",
            if beyond { "beyond" } else { "within" }
        )),
        fmt_value(floor),
        fmt_value(peer),
    );
}

/// A target over many rows: FAIL if any row fails, else n/a if a row lacks a number or none
/// was compared, else PASS; the failing rows follow, indented.
fn summary_line(out: &mut String, what: &str, compared: usize, missing: usize, failing: &[String]) {
    let verdict = if !failing.is_empty() {
        Verdict::Fail
    } else if missing > 0 || compared == 0 {
        Verdict::NotAvailable
    } else {
        Verdict::Pass
    };
    let _ = writeln!(
        out,
        "{:4}  {what}  ({compared} rows compared, {} behind, {missing} missing a value)",
        verdict.label(),
        failing.len()
    );
    for f in failing {
        let _ = writeln!(out, "        {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server: &str, rep: u32, cpu: f64) -> Record {
        Record {
            test: CONC.into(),
            config: "clients=1000".into(),
            server: server.into(),
            rep: Some(rep),
            ref_config: None,
            metrics: vec![
                ("sessions_per_sec".into(), Some(200.0)),
                ("server_cpu_ms_per_mb".into(), Some(cpu)),
            ],
        }
    }

    #[test]
    fn repetitions_are_listed_in_the_order_run_when_there_are_several() {
        let records = [
            record("dnsmasq", 1, 5.5),
            record("tftpd", 1, 4.5),
            record("tftpd", 2, 4.25),
            record("dnsmasq", 2, 6.0),
        ];
        let mut out = String::new();
        repetitions(&mut out, &records);
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("clients=")).collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(
            lines[2].contains("tftpd") && lines[2].contains("r2:"),
            "{out}"
        );
        assert!(lines[2].contains("4.250 ms/MB"), "{out}");
        assert!(
            lines[3].contains("dnsmasq") && lines[3].contains("6.000 ms/MB"),
            "{out}"
        );
        // A metric not measured says so.
        assert!(lines[0].contains("client     n/a s"), "{out}");
    }

    #[test]
    fn concurrency_ratios_are_also_given_repetition_by_repetition() {
        // The VM twice as fast in the second repetition: the medians' ratio is that of
        // different minutes, each repetition's is not.
        let records = [
            record("dnsmasq", 1, 6.0),
            record("tftpd", 1, 4.5),
            record("tftpd", 2, 2.5),
            record("dnsmasq", 2, 3.125),
        ];
        let ratios = |records: &[Record]| {
            let mut out = String::new();
            let cpu = "server_cpu_ms_per_mb";
            repetition_ratios(&mut out, records, "clients=1000", cpu, "tftpd", "dnsmasq");
            out
        };
        assert_eq!(
            ratios(&records).trim(),
            "server_cpu_ms_per_mb, tftpd / dnsmasq in each repetition: r1 ×0.75, r2 ×0.80"
        );
        // A peer missing from a repetition says so; one repetition prints nothing.
        let out = ratios(&records[..3]);
        assert!(out.ends_with("r1 ×0.75, r2 n/a\n"), "{out}");
        let out = ratios(&records[..2]);
        assert!(out.is_empty(), "{out}");
    }

    /// The lock-step medians of one config: (server, MB/s, CPU ms per MB).
    fn lock_step(config: &str, servers: &[(&str, f64, f64)]) -> BTreeMap<Key, f64> {
        let mut medians = BTreeMap::new();
        for &(server, tput, cpu) in servers {
            let key = |test: &str, metric: &str| {
                (test.into(), config.into(), metric.into(), server.into())
            };
            medians.insert(key("throughput", "mb_per_sec"), tput);
            medians.insert(key("server-cpu-per-mb", "cpu_ms_per_mb"), cpu);
        }
        medians
    }

    #[test]
    fn lock_step_targets_say_whether_the_floor_meets_them() {
        // Unpinned 512 (results/2026-12-05-seekable-run.txt): the floor itself spends ×0.89 of
        // tftpd-hpa's CPU, so ×0.85 is beyond it; its MB/s target is within.
        let medians = lock_step(
            "bs=512 ws=1 curl unpinned",
            &[
                (BASELINE, 7.159, 50.0),
                (TFTPD, 7.501, 45.2),
                (FLOOR, 7.798, 44.6),
            ],
        );
        let mut out = String::new();
        targets(&mut out, &[], &[], &[], &medians, &[]);
        let line = |start: &str| {
            out.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in\n{out}"))
                .to_string()
        };
        let cpu = line("FLOOR  lock-step bs=512 ws=1 curl unpinned: CPU/MB");
        assert!(
            cpu.contains("CPU/MB ×0.85 tftpd-hpa is beyond the floor  (floor 44.6 / tftpd-hpa 50.0 = ×0.89; tftpd ×1.01 of floor)"),
            "{cpu}"
        );
        let tput = line("FLOOR  lock-step bs=512 ws=1 curl unpinned: MB/s");
        assert!(
            tput.contains("MB/s ×1.00 tftpd-hpa is within the floor"),
            "{tput}"
        );
        assert!(
            line("FAIL  lock-step bs=512 ws=1 curl unpinned: tftpd CPU/MB ≤ 0.85×")
                .contains("×0.90")
        );
        // Not measured: no FLOOR line, the targets say n/a.
        assert!(!out.contains("FLOOR  lock-step bs=1468"), "{out}");
        assert!(line("n/a   lock-step bs=1468 ws=1 curl pinned: tftpd MB/s").contains("missing"));
    }

    #[test]
    fn one_repetition_adds_nothing_to_the_medians() {
        let mut out = String::new();
        repetitions(&mut out, &[record("tftpd", 1, 4.5)]);
        assert!(out.is_empty(), "{out}");
    }
}
