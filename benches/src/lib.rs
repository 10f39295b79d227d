//! Shared code for the benchmarks.
