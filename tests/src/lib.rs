//! Test tooling shared by the suites: moto on loopback, a test world over either store, the
//! local server, a small HTTP client that holds every answer to `openapi.yaml`, a Lambda
//! Runtime API, store wrappers for races and faults, and the money invariants.

pub mod check_cache;
pub mod faults;
pub mod http;
pub mod invariants;
pub mod logs;
pub mod messages;
pub mod moto;
pub mod openapi;
pub mod runtime_api;
pub mod world;
