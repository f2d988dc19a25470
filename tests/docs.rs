//! The README's quick start and the crate docs' quick start are one
//! program: both compile as doctests, and this test keeps them identical.

/// The first fenced Rust block of `text`, with `prefix` removed from each line.
fn first_rust_block(text: &str, prefix: &str) -> String {
    let mut lines = text.lines().map(|line| {
        let line = line.trim_end();
        match line.strip_prefix(prefix) {
            Some(rest) => rest,
            // `//!` alone: an empty line of the doc comment.
            None if !prefix.is_empty() && line == prefix.trim_end() => "",
            None => line,
        }
    });
    lines
        .by_ref()
        .find(|line| line.starts_with("```rust") || *line == "```no_run")
        .expect("a rust code block");
    lines
        .take_while(|line| !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_quick_start_is_the_crate_docs_quick_start() {
    let readme = first_rust_block(include_str!("../README.md"), "");
    let crate_docs = first_rust_block(include_str!("../src/lib.rs"), "//! ");
    assert!(readme.contains("impl Listener for Echo"), "{readme}");
    assert_eq!(readme, crate_docs);
}
