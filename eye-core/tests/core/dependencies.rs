//! eye-core stays pure so the SDK and WebAssembly frontends can use it: its manifest
//! names only the model's dependencies, and what `cargo tree -p eye-core` shows (every
//! crate it pulls in, however indirectly) holds no tokio, sqlx, redis or reqwest, nor
//! any other I/O runtime or client.

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

/// Crates that do I/O (async runtimes, network stacks, database and HTTP clients):
/// none may be anywhere in eye-core's dependency tree.
const IO_CRATES: [&str; 14] = [
    "tokio",
    "async-std",
    "smol",
    "mio",
    "socket2",
    "sqlx",
    "sqlx-core",
    "libsqlite3-sys",
    "redis",
    "reqwest",
    "hyper",
    "h2",
    "rustls",
    "openssl",
];

/// Every crate in eye-core's normal dependency tree, as `cargo tree` shows it.
fn dependency_tree() -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "-p", "eye-core", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn cargo_tree_of_eye_core_holds_no_io_crate() {
    let tree = dependency_tree();

    assert!(
        tree.iter().any(|n| n == "serde_json"),
        "the tree was read: {tree:?}"
    );
    let io: Vec<&String> = tree
        .iter()
        .filter(|n| IO_CRATES.contains(&n.as_str()))
        .collect();
    assert!(io.is_empty(), "eye-core pulls in {io:?}: it does no I/O");
}
