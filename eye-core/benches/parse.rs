//! Parsing benchmarks (filled in by the eye-core tests work).

fn main() {}
