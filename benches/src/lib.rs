//! Shared code for the benchmarks: process-tree accounting from `/proc`, resource usage and
//! limits, and summary statistics for the end-to-end load tools (`tftp-loadgen`,
//! `udp-ceiling`, `proc-tree`).

pub mod proctree;
pub mod summary;
pub mod sys;
