//! `docs/troubleshooting.md` and the code cannot drift: every diagnosis id the code can produce
//! has a section in the doc, and every section names an id the code still produces.
//!
//! Ids are collected from the source, not from a list someone must remember to update: every
//! kebab-case string literal in the non-test part of `src/diagnose/**.rs` (ids, id constants,
//! ids chosen by a `match`), and the literal first argument of `Diagnosis::new(` anywhere else
//! under `src/` (`verify.rs`, `session.rs`, the commands, the GUI). The test also counts how
//! many ids at least one test names (as the literal or its constant) and prints the figure:
//! `cargo test --test troubleshooting_doc -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The part of a source file before its unit tests, and the unit tests.
fn split_tests(text: &str) -> (&str, &str) {
    match text.find("#[cfg(test)]") {
        Some(at) => text.split_at(at),
        None => (text, ""),
    }
}

fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').count() >= 2
        && s.split('-').all(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Every `"kebab-case"` literal with its byte offset, scanning left to right like a regex.
fn kebab_literals(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"'
            && let Some(len) = text[i + 1..].find('"')
        {
            let candidate = &text[i + 1..i + 1 + len];
            if is_kebab(candidate) {
                found.push((i, candidate));
                i += len + 2;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Diagnosis id → the source file that produces it (relative path).
fn ids_in_code() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut ids = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(root()).expect("under root").display().to_string();
        let text = std::fs::read_to_string(&file).expect("read source");
        let (code, _) = split_tests(&text);
        let in_diagnose = relative.starts_with("src/diagnose/");
        for (at, literal) in kebab_literals(code) {
            if in_diagnose || code[..at].trim_end().ends_with("Diagnosis::new(") {
                ids.entry(literal.to_owned()).or_insert_with(|| relative.clone());
            }
        }
    }
    ids
}

/// Id constants (`SMTP_AUTH_DISABLED` → `smtp-auth-disabled`), so tests naming the constant
/// count.
fn id_constants() -> BTreeMap<String, String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut constants = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) =
                line.strip_prefix("pub const ").or_else(|| line.strip_prefix("const "))
            else {
                continue;
            };
            let Some((name, value)) = rest.split_once(": &str = \"") else { continue };
            let value = value.trim_end_matches("\";");
            if is_kebab(value) {
                constants.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    constants
}

/// Section id → the section's text.
fn sections_in_doc() -> BTreeMap<String, String> {
    let path = root().join("docs").join("troubleshooting.md");
    let doc = std::fs::read_to_string(&path).expect("docs/troubleshooting.md exists");
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if line.starts_with('#') {
            if let Some((id, body)) = current.take() {
                assert!(sections.insert(id.clone(), body).is_none(), "`{id}` has two sections");
            }
            if let Some(id) = line.strip_prefix("### `").and_then(|l| l.strip_suffix('`')) {
                current = Some((id.to_owned(), String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((id, body)) = current {
        sections.insert(id, body);
    }
    sections
}

/// All test code: `tests/*.rs` (but this file) and the unit tests inside `src/`.
fn test_code() -> String {
    let mut text = String::new();
    let mut files = Vec::new();
    rust_files(&root().join("tests"), &mut files);
    for file in files.iter().filter(|f| !f.ends_with("troubleshooting_doc.rs")) {
        text.push_str(&std::fs::read_to_string(file).expect("read test"));
    }
    let mut sources = Vec::new();
    rust_files(&root().join("src"), &mut sources);
    for file in sources {
        let source = std::fs::read_to_string(&file).expect("read source");
        text.push_str(split_tests(&source).1);
    }
    text
}

fn names_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[test]
fn every_diagnosis_id_is_documented_and_every_documented_id_exists() {
    let code = ids_in_code();
    let doc = sections_in_doc();

    // The scanner finds at least every id the modules list themselves.
    let listed = [
        mailgrant::diagnose::mail::IDS,
        mailgrant::diagnose::oauth::IDS,
        mailgrant::diagnose::preflight::IDS,
    ];
    for id in listed.iter().flat_map(|ids| ids.iter()) {
        assert!(code.contains_key(*id), "the scanner missed `{id}`");
    }
    assert!(code.len() > 100, "suspiciously few ids found: {}", code.len());

    let undocumented: Vec<String> = code
        .iter()
        .filter(|(id, _)| !doc.contains_key(*id))
        .map(|(id, file)| format!("{id} ({file})"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "add a section `### \\`id\\`` with Summary, Likely cause and Fix to \
         docs/troubleshooting.md for: {undocumented:#?}"
    );
    let stale: Vec<&String> = doc.keys().filter(|id| !code.contains_key(*id)).collect();
    assert!(stale.is_empty(), "documented ids no code produces any more: {stale:#?}");

    for (id, body) in &doc {
        for field in ["- **Summary:** ", "- **Likely cause:** ", "- **Fix:** "] {
            let filled = body.lines().any(|l| l.strip_prefix(field).is_some_and(|t| t.len() > 5));
            assert!(filled, "`{id}` lacks {field:?} in docs/troubleshooting.md");
        }
        let lower = body.to_lowercase();
        assert!(!lower.contains("ignore the certificate"), "`{id}` offers to ignore a certificate");
    }
}

#[test]
fn how_many_diagnoses_tests_provoke() {
    let code = ids_in_code();
    let constants = id_constants();
    let tests = test_code();
    let (mut named, mut not_named) = (Vec::new(), Vec::new());
    for id in code.keys() {
        let literal = format!("\"{id}\"");
        let by_constant = constants.iter().any(|(name, v)| v == id && names_word(&tests, name));
        if tests.contains(&literal) || by_constant {
            named.push(id.as_str());
        } else {
            not_named.push(id.as_str());
        }
    }
    let areas: BTreeSet<&str> = code.values().map(String::as_str).collect();
    eprintln!(
        "diagnoses: {} (from {} source files); named by at least one test: {}; not yet: {}",
        code.len(),
        areas.len(),
        named.len(),
        not_named.len()
    );
    eprintln!("not named by any test: {}", not_named.join(", "));
    assert_eq!(named.len() + not_named.len(), code.len());
    assert!(!named.is_empty());
}
