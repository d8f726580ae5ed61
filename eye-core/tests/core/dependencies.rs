//! eye-core stays pure so the SDK and WebAssembly frontends can use it: its manifest
//! names only the model's dependencies (no tokio, sqlx, redis or reqwest).

/// The only crates eye-core may depend on outside tests and benchmarks. `base64` and
/// `sha2` (pure computation, no I/O, fine on WebAssembly) encode and check cursors.
const ALLOWED: [&str; 8] = [
    "base64",
    "chrono",
    "schemars",
    "serde",
    "serde_json",
    "sha2",
    "thiserror",
    "uuid",
];

/// The dependency names of the `[dependencies]` table of eye-core's manifest.
fn normal_dependencies() -> Vec<String> {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[dependencies]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            l.split(['=', '.'])
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn eye_core_depends_only_on_pure_model_crates() {
    let deps = normal_dependencies();

    assert!(!deps.is_empty(), "no [dependencies] table found");
    for dep in &deps {
        assert!(
            ALLOWED.contains(&dep.as_str()),
            "eye-core must not depend on {dep}: it does no I/O"
        );
    }
}
