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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The server every ratio is taken against.
const BASELINE: &str = "tftpd-hpa";
/// Metrics shown only when some value is not zero.
const HIDE_IF_ZERO: &[&str] = &["failed", "resends"];

#[derive(Debug, Deserialize)]
struct Record {
    test: String,
    config: String,
    server: String,
    #[serde(default)]
    ref_config: Option<String>,
    metrics: Vec<(String, Option<f64>)>,
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
        let _ = writeln!(table, "\n== {test} (median; ×ratio vs {BASELINE})");
        let _ = write!(table, "{:label_w$}", "config / metric");
        for s in &test_servers {
            let _ = write!(table, " {s:>col_w$}");
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
            let _ = writeln!(table);
        }
    }
    if rows.iter().any(|r| r.baseline_config.is_some()) {
        let _ = writeln!(
            table,
            "\n* ratio against tftpd-hpa in a comparable config it supports (see baseline_config in summary.csv)"
        );
    }
    print!("{table}");

    fs::create_dir_all(&outdir)?;
    fs::write(outdir.join("table.txt"), &table)?;
    fs::write(
        outdir.join("summary.json"),
        serde_json::to_string_pretty(&rows)? + "\n",
    )?;
    let mut csv = String::from(
        "test,config,metric,server,n,median,min,max,ratio_vs_tftpd_hpa,baseline_config\n",
    );
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
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
        );
    }
    fs::write(outdir.join("summary.csv"), csv)?;
    Ok(())
}
