// SPDX-License-Identifier: Apache-2.0
//! The checked-in `src/bindings.rs` must match the public header.
//!
//! * `bindgen_output_matches` regenerates the bindings with the pinned bindgen (needs libclang)
//!   and compares them with the file; `ROLAYER_BLESS=1` rewrites the file instead.
//! * `every_header_symbol_is_bound` needs no libclang: it reads the header's `ROLAYER_API`
//!   declarations and integer `#define`s and checks each one in the file (name, arity, value).
//!
//! The header is `include/` at the project root, or `$ROLAYER_INCLUDE_DIR`.

mod support {
    pub mod builder;
}

use std::fs;
use std::path::PathBuf;

fn include_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROLAYER_INCLUDE_DIR") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include");
    assert!(
        dir.join("rolayer.h").is_file(),
        "no rolayer.h in {}: set ROLAYER_INCLUDE_DIR",
        dir.display()
    );
    dir
}

fn bindings_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/bindings.rs")
}

#[test]
fn bindgen_output_matches() {
    let generated = support::builder::builder(&include_dir())
        .generate()
        .expect("bindgen failed (is libclang installed? apt-get install libclang-dev)")
        .to_string();
    let path = bindings_path();
    if std::env::var_os("ROLAYER_BLESS").is_some() {
        fs::write(&path, &generated).expect("write src/bindings.rs");
        return;
    }
    let checked_in = fs::read_to_string(&path).expect("read src/bindings.rs");
    if checked_in != generated {
        let first = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "src/bindings.rs is stale: it differs from bindgen's output for the header at line {}:\n  \
             checked in: {:?}\n  generated:  {:?}\n\
             Run ROLAYER_BLESS=1 cargo test -p rolayer-sys --test bindings and review the diff.",
            first + 1,
            checked_in.lines().nth(first),
            generated.lines().nth(first)
        );
    }
}

/// Strips C comments.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        let start = match (block, line) {
            (Some(b), Some(l)) => b.min(l),
            (Some(b), None) => b,
            (None, Some(l)) => l,
            (None, None) => {
                out.push_str(rest);
                return out;
            }
        };
        out.push_str(&rest[..start]);
        if rest[start..].starts_with("/*") {
            let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
            out.push(' ');
            rest = &rest[end..];
        } else {
            let end = rest[start..].find('\n').map_or(rest.len(), |e| e + start);
            rest = &rest[end..];
        }
    }
}

/// The text inside the parentheses that open at `open` (an index of '(').
fn parenthesised(s: &str, open: usize) -> &str {
    let mut depth = 0;
    let mut prev = '\0';
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            // `->` in a Rust return type is not a closing angle bracket.
            '>' if prev == '-' => {}
            ')' | '>' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
        prev = c;
    }
    panic!("unbalanced parentheses");
}

fn arity(params: &str) -> usize {
    let p = params.trim();
    if p.is_empty() || p == "void" {
        return 0;
    }
    let mut depth = 0;
    let mut n = 1;
    let mut prev = '\0';
    for c in p.chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            // `->` in a Rust return type is not a closing angle bracket.
            '>' if prev != '-' => depth -= 1,
            ',' if depth == 0 => n += 1,
            _ => {}
        }
        prev = c;
    }
    // A trailing comma (rustfmt style) does not start another parameter.
    if p.ends_with(',') {
        n -= 1;
    }
    n
}

struct HeaderFn {
    name: String,
    arity: usize,
}

fn header_items() -> (Vec<HeaderFn>, Vec<(String, i64)>) {
    let dir = include_dir();
    let mut files = vec![dir.join("rolayer.h")];
    let mut sub: Vec<PathBuf> = fs::read_dir(dir.join("rolayer"))
        .expect("include/rolayer")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    sub.sort();
    files.extend(sub);

    let mut fns = Vec::new();
    let mut consts = Vec::new();
    for f in files {
        let text = strip_comments(&fs::read_to_string(&f).expect("read header"));
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("#define") {
                if let (Some(name), Some(value)) = (words.next(), words.next()) {
                    if words.next().is_none() && name.starts_with("ROLAYER_") {
                        // Status codes are parenthesised: `#define ROLAYER_EINVAL (-1)`.
                        let v = value
                            .strip_prefix('(')
                            .and_then(|v| v.strip_suffix(')'))
                            .unwrap_or(value)
                            .trim_end_matches(['u', 'U']);
                        let parsed = if let Some(hex) = v.strip_prefix("0x") {
                            i64::from_str_radix(hex, 16).ok()
                        } else {
                            v.parse::<i64>().ok()
                        };
                        if let Some(v) = parsed {
                            consts.push((name.to_string(), v));
                        }
                    }
                }
            }
        }
        let mut rest = text.as_str();
        while let Some(at) = rest.find("ROLAYER_API ") {
            // Only declarations: ROLAYER_API first on its line (not the #define of the macro).
            let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
            if !rest[line_start..at].trim().is_empty() {
                rest = &rest[at + 1..];
                continue;
            }
            let decl_end = rest[at..].find(';').expect("declaration without ';'") + at;
            let decl = &rest[at..decl_end];
            let open = decl.find('(').expect("function declaration");
            let name = decl[..open]
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .rfind(|w| !w.is_empty())
                .expect("function name")
                .to_string();
            fns.push(HeaderFn {
                name,
                arity: arity(parenthesised(decl, open)),
            });
            rest = &rest[decl_end..];
        }
    }
    (fns, consts)
}

#[test]
fn every_header_symbol_is_bound() {
    let bindings = fs::read_to_string(bindings_path()).expect("read src/bindings.rs");
    let (fns, consts) = header_items();
    assert!(
        fns.len() > 50,
        "found only {} ROLAYER_API functions",
        fns.len()
    );
    for f in &fns {
        let needle = format!("pub fn {}(", f.name);
        let at = bindings
            .find(&needle)
            .unwrap_or_else(|| panic!("{} is in the header but not in src/bindings.rs", f.name));
        let open = at + needle.len() - 1;
        let got = arity(parenthesised(&bindings, open));
        assert_eq!(
            got, f.arity,
            "{} takes {} parameters in the header, {} in src/bindings.rs",
            f.name, f.arity, got
        );
    }
    // Nothing bound that the header no longer declares.
    let mut rest = bindings.as_str();
    while let Some(at) = rest.find("pub fn ") {
        let name: String = rest[at + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.starts_with("rolayer_") {
            assert!(
                fns.iter().any(|f| f.name == name),
                "{name} is bound but no longer in the header"
            );
        }
        rest = &rest[at + 7..];
    }
    assert!(
        consts.len() >= 20,
        "found only {} integer constants",
        consts.len()
    );
    for (name, value) in &consts {
        let needle = format!("pub const {name}: ");
        let at = bindings
            .find(&needle)
            .unwrap_or_else(|| panic!("{name} is in the header but not in src/bindings.rs"));
        let line = bindings[at..].lines().next().unwrap();
        let v = line
            .rsplit('=')
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(';')
            .trim();
        assert_eq!(
            v.parse::<i64>().ok(),
            Some(*value),
            "{name}: header {value}, bindings {line}"
        );
    }
}

/// bindgen's layout asserts are written for the host (64-bit sizes and offsets): the checked-in
/// file must carry none, or it would not compile on a 32-bit target.
#[test]
fn no_host_specific_layout_asserts() {
    let text = fs::read_to_string(bindings_path()).expect("read src/bindings.rs");
    for needle in ["size_of::<", "align_of::<", "offset_of!"] {
        assert!(
            !text.contains(needle),
            "src/bindings.rs contains a layout assert ({needle}): generate with layout_tests(false)"
        );
    }
}
