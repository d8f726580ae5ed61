//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds
//! `migrations/sqlite` and `migrations/postgres` at compile time, and cargo does not
//! otherwise see a new file in a directory (a release build once shipped without a new
//! migration this way). A directory here is scanned recursively.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
