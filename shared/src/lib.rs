//! The domain of establishment user management, modeled on Saudi Arabia's Muqeem and Qiwa
//! platforms: organizations subscribe users from a prepaid balance, users activate by email
//! link and SMS code, administrators grant per-establishment, per-service permissions,
//! modify and suspend users, and seats expire yearly — every change audited.
//!
//! This crate holds the types (parsed at the edge, trusted inside), the rules as plain
//! functions, the ports (store, mailer, SMS sender, clock, secrets), the pipeline every
//! change runs through, the outbox its messages leave by, and the actions. It knows
//! nothing of AWS or HTTP: the `aws-adapters` and `gateway` crates do.

pub mod actions;
pub mod audit;
pub mod catalog;
pub mod clock;
pub mod contact;
pub mod cursor;
pub mod deadline;
pub mod embedded;
pub mod entropy;
pub mod env;
pub mod error;
pub mod events;
pub mod grants;
pub mod idempotency;
pub mod identity;
pub mod ledger;
pub mod messaging;
pub mod metrics;
pub mod money;
pub mod organization;
pub mod outbox;
pub mod pace;
pub mod parse;
pub mod person;
pub mod pipeline;
pub mod policy;
pub mod pricing;
pub mod search;
pub mod secrets;
pub mod status;
pub mod store;
pub mod sweep_state;
pub mod user;
