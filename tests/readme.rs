//! The README's quick start is `examples/quickstart.rs`, character for
//! character, so what the README shows is what `cargo run --example
//! quickstart` runs (the README's code blocks also run as doc tests).
//! Run with `cargo test --test readme`.

#[test]
fn the_readme_quick_start_is_the_quickstart_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/quickstart.rs")).unwrap();
    // The example without its `//!` header: from its first `use` on.
    let code = &example[example.find("\nuse ").expect("the example has imports") + 1..];
    let block = format!("```rust\n{code}```\n");
    assert!(
        readme.contains(&block),
        "README.md's quick start differs from examples/quickstart.rs; copy the \
         example (from its first `use`) into the README's ```rust block"
    );
}
