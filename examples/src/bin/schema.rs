//! Writes the JSON Schema of the event format, the file a frontend validates against
//! before sending.
//!
//! ```sh
//! cargo run -p eye-examples --bin schema [PATH]   # default: event.schema.json
//! ```

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "event.schema.json".to_owned());
    let schema = eye_core::event_schema_json();
    std::fs::write(&path, &schema)?;
    println!(
        "wrote the event JSON Schema ({} bytes) to {path}",
        schema.len()
    );
    Ok(())
}
