//! The real `keygate` binary, run as an operator runs it: one test binary, a module per
//! area, each test in its own temporary home.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may panic.

mod common;

mod commands;
mod disks;
mod edits;
mod gateway;
mod scan;
mod snapshots;
mod usdm;
mod walkthrough;
