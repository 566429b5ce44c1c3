//! The code map is true: `src/lib.rs` lists the top-level modules top to bottom, and a module
//! imports only modules listed below it. The imports are read from the `crate::NAME` paths
//! of non-test code (files whose name has no `test`, up to their `#[cfg(test)]` part), so a
//! new upward import fails here with the file that makes it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules of `lib.rs`'s code map, in their order: every backticked name before the
/// colon of a `//! - ` line.
fn code_map_order(lib_rs: &str) -> Vec<String> {
    let mut order = Vec::new();
    for line in lib_rs.lines() {
        let Some(item) = line.strip_prefix("//! - ") else {
            continue;
        };
        let Some((names, _)) = item.split_once(':') else {
            continue;
        };
        for (i, part) in names.split('`').enumerate() {
            if i % 2 == 1 && !part.contains("::") {
                order.push(part.to_string());
            }
        }
    }
    order
}

/// The `pub mod` / `mod` declarations of `lib.rs` that are not test-only.
fn declared_modules(lib_rs: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let mut test_only = false;
    for line in lib_rs.lines() {
        let line = line.trim();
        if line.starts_with("#[cfg(test)]") {
            test_only = true;
            continue;
        }
        let declared = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = declared.and_then(|rest| rest.strip_suffix(';')) {
            if !test_only {
                modules.insert(name.to_string());
            }
        }
        if !line.starts_with("#[") {
            test_only = false;
        }
    }
    modules
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// Every top-level module that `text` names as `crate::NAME`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
        rest = after;
    }
    names
}

#[test]
fn every_module_imports_only_modules_below_it_in_the_code_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = code_map_order(&lib_rs);
    let declared = declared_modules(&lib_rs);
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        listed, declared,
        "lib.rs's code map and its module declarations disagree"
    );
    let position = |name: &str| order.iter().position(|m| m == name);

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut num_edges = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let name = relative.file_name().unwrap().to_string_lossy();
        if name.contains("test") {
            continue;
        }
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some(from) = position(&top) else {
            continue; // lib.rs, main.rs and test-only modules
        };
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for imported in crate_paths(code) {
            if imported == top {
                continue;
            }
            num_edges += 1;
            match position(&imported) {
                Some(to) if to > from => {}
                Some(_) => violations.push(format!(
                    "{} imports {imported}, which the code map lists above {top}",
                    relative.display()
                )),
                None => violations.push(format!(
                    "{} imports {imported}, which the code map does not list",
                    relative.display()
                )),
            }
        }
    }
    assert!(
        num_edges > 20,
        "read only {num_edges} imports: the scan is broken"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_code_map_reader_sees_names_and_order() {
    let lib_rs = "//! Code map\n//! - `cli`: x\n//! - `journal_upload`, `api`: y (`/metrics`)\n\
                  //! - `listener`: z, `listener::syslog` too\n";
    assert_eq!(
        code_map_order(lib_rs),
        ["cli", "journal_upload", "api", "listener"]
    );
    assert_eq!(
        crate_paths("use crate::store::X; crate::api::y(); crate::store::Z"),
        BTreeSet::from(["api".to_string(), "store".to_string()])
    );
    let declared = declared_modules("pub mod a;\n#[cfg(test)]\npub(crate) mod t;\nmod b;\n");
    assert_eq!(declared, BTreeSet::from(["a".into(), "b".into()]));
}
