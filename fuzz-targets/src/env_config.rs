//! The env config parser (`queue_proxy::config`): envconfig's rules over Go's
//! number and bool syntax.
//!
//! Input: lines of `KEY=VALUE` applied over a complete valid environment
//! (`config::test_env`), `-KEY` removing a variable. A value that is not UTF-8
//! reaches the parser as "present but not Unicode", as `std::env::var_os` gives it.
//!
//! Checks: a failure names a variable the table declares, and the message
//! carries its name; parsing the same environment twice gives the same answer.

use queue_proxy::config::{Config, EnvSource, NotUnicode, VARS, test_env};
use std::collections::HashMap;

pub const TARGET: crate::Target = crate::Target {
    name: "env_config",
    run,
    dictionary: &[
        b"CONTAINER_CONCURRENCY=",
        b"QUEUE_SERVING_PORT=",
        b"USER_PORT=",
        b"REVISION_TIMEOUT_SECONDS=",
        b"ENABLE_HTTP_FULL_DUPLEX=",
        b"QUEUE_PROXY_WORKER_THREADS=",
        b"QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS=",
        b"-SERVING_POD\n",
        b"0x",
        b"0o",
        b"0b",
        b"_",
        b"+",
        b"-",
        b"9223372036854775808",
        b"65536",
        b"TRUE",
        b"f",
    ],
};

struct Env(HashMap<String, Result<String, NotUnicode>>);

impl EnvSource for Env {
    fn get(&self, key: &str) -> Result<Option<String>, NotUnicode> {
        self.0.get(key).cloned().transpose()
    }
}

pub fn run(data: &[u8]) {
    let mut env: HashMap<_, _> = test_env(8080)
        .into_iter()
        .map(|(k, v)| (k, Ok(v)))
        .collect();
    for line in crate::lines(data) {
        if let Some(key) = line.strip_prefix(b"-") {
            env.remove(&*crate::text(key));
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = crate::text(&line[..eq]).into_owned();
        let value = String::from_utf8(line[eq + 1..].to_vec()).map_err(|_| NotUnicode);
        env.insert(key, value);
    }
    let env = Env(env);
    let first = Config::from_env(&env);
    assert_eq!(first, Config::from_env(&env), "parsing is deterministic");
    if let Err(error) = first {
        let key = error.key();
        assert!(VARS.iter().any(|v| v.name == key), "{key} is not declared");
        assert!(error.to_string().contains(key), "{error} names {key}");
    }
}
