//! What other crates take from the load generator: its realistic payloads
//! (the criterion benchmarks decode exactly what load tests send) and the
//! small seedable generator behind them.

pub mod payload;
pub mod rng;
