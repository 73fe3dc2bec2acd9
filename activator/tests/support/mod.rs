//! Test doubles shared by the integration tests. Each test file uses some of
//! them, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod fake_pod;
pub mod http;
pub mod real_pod;
