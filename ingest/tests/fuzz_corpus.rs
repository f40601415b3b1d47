//! The fuzz corpus as a regression test: every file committed under
//! `fuzz/corpus/<target>/` goes through the same decoder and the same
//! property checks as the fuzz target of that name (`fuzz/src/props`), so
//! an input that once found a bug keeps testing for it in `cargo test`
//! without running a fuzzer.

#[path = "../../fuzz/src/props/mod.rs"]
mod props;

use std::path::Path;

#[test]
fn every_corpus_input_keeps_its_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut failed = Vec::new();
    let mut checked = 0;
    for (target, check) in props::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target}");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            checked += 1;
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "properties broken by: {failed:#?}");
    eprintln!("{checked} corpus inputs checked");
}
