//! Placeholder until the loadgen issue fills this crate.
fn main() {}
