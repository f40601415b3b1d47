//! Sluice's fuzz targets share their properties with the corpus test of
//! the workspace (`ingest/tests/fuzz_corpus.rs`): see [`props`].

pub mod props;
