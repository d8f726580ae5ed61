//! The browsable API, the dashboard, OpenAPI and metrics: one test binary.
//!
//! - `openapi`: the document against the OpenAPI 3.1 schema, and against the routes.
//! - `html`: content negotiation, escaping, the post form, auth prompts.
//! - `browser`: a real headless Chromium through chromedriver (skips without it).
//! - `tracker`: eye.js in that Chromium, from pages of another origin.

#![allow(clippy::unwrap_used)]

mod browser;
mod helpers;
mod html;
mod openapi;
mod real;
mod size;
mod tracker;
