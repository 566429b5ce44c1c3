//! Replays the committed fuzz regression corpora (`fuzz/regressions/TARGET/*`) through the
//! same property checks the cargo-fuzz targets run, on stable, as part of `cargo test`.
//! A new target plugs in with one arm in `check_for`.

use std::fs;
use std::path::Path;

fn check_for(target: &str) -> Option<fn(&[u8])> {
    match target {
        "parse" => Some(starling::fuzzcheck::parse::check),
        "forward" => Some(starling::fuzzcheck::forward::check),
        "framing" => Some(starling::fuzzcheck::framing::check),
        "journal_export" => Some(starling::fuzzcheck::journal::check),
        "segment" => Some(starling::fuzzcheck::segment::segment),
        _ => None,
    }
}

#[test]
fn fuzz_regression_corpora_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut num_inputs = 0;
    let mut targets: Vec<_> = fs::read_dir(&root)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", root.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    targets.sort();
    for dir in targets {
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        let check = check_for(&target)
            .unwrap_or_else(|| panic!("no property check for fuzz target {target:?}"));
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).unwrap();
            println!("{target}: {}", file.display());
            check(&data);
            num_inputs += 1;
        }
    }
    assert!(
        num_inputs > 0,
        "no regression inputs under {}",
        root.display()
    );
}
