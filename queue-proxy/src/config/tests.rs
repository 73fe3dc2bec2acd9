use super::*;

fn env() -> HashMap<String, String> {
    test_env(8080)
}

fn with(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = env();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    env
}

fn without(keys: &[&str]) -> HashMap<String, String> {
    let mut env = env();
    for k in keys {
        assert!(env.remove(*k).is_some(), "test_env lacks {k}");
    }
    env
}

fn parse_err(key: &'static str, value: &str, ty: &'static str, reason: NumError) -> ConfigError {
    ConfigError::Parse {
        key,
        value: value.to_owned(),
        ty,
        reason,
    }
}

fn var(name: &str) -> &'static Var {
    VARS.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} not in VARS"))
}

#[test]
fn reconciler_env_parses() {
    let config = Config::from_env(&env()).unwrap();
    assert_eq!(
        config,
        Config {
            container_concurrency: 0,
            queue_serving_port: 8012,
            queue_serving_tls_port: "8112".into(),
            user_port: 8080,
            revision_timeout_seconds: 300,
            revision_response_start_timeout_seconds: 0,
            revision_idle_timeout_seconds: 0,
            serving_readiness_probe: "".into(),
            enable_http_full_duplex: false,
            enable_http2_auto_detection: false,
            enable_multi_container_probes: false,
            serving_logging_config: "".into(),
            serving_logging_level: "".into(),
            serving_namespace: "default".into(),
            serving_service: "hello".into(),
            serving_configuration: "hello".into(),
            serving_revision: "hello-00001".into(),
            serving_pod: "hello-00001-deployment-5d4b9c7f6-abcde".into(),
            serving_pod_ip: "127.0.0.1".into(),
            observability_config: r#"{"tracing":{},"metrics":{},"runtime":{},"requestMetrics":{}}"#
                .into(),
            queue_proxy_tls_min_version: "".into(),
            queue_proxy_tls_max_version: "".into(),
            queue_proxy_tls_cipher_suites: "".into(),
            queue_proxy_tls_curve_preferences: "".into(),
            admin_port: 8022,
            metrics_port: 9090,
            user_metrics_port: 9091,
            worker_threads: None,
            drain_quiet_period: std::time::Duration::from_secs(30),
            upgrade_drain_timeout: std::time::Duration::from_secs(60),
            certs_dir: "/var/lib/knative/certs".into(),
            header_read_timeout: std::time::Duration::from_secs(60),
        }
    );
}

#[test]
fn duration_extensions_read_milliseconds() {
    let mut e = with(&[
        ("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", "0x64"),
        ("QUEUE_PROXY_UPGRADE_DRAIN_TIMEOUT_MS", "2500"),
    ]);
    let config = Config::from_env(&e).unwrap();
    assert_eq!(
        config.drain_quiet_period,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        config.upgrade_drain_timeout,
        std::time::Duration::from_millis(2500)
    );
    e.insert("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS".into(), "-1".into());
    let err = Config::from_env(&e).unwrap_err();
    assert!(
        err.to_string()
            .contains("QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS"),
        "{err}"
    );
}

/// The table's required set is exactly spec §1's.
#[test]
fn required_set_matches_upstream() {
    let required: Vec<_> = VARS
        .iter()
        .filter(|v| v.presence == Presence::Required)
        .map(|v| v.name)
        .collect();
    assert_eq!(
        required,
        [
            "CONTAINER_CONCURRENCY",
            "QUEUE_SERVING_PORT",
            "QUEUE_SERVING_TLS_PORT",
            "USER_PORT",
            "REVISION_TIMEOUT_SECONDS",
            "SERVING_LOGGING_CONFIG",
            "SERVING_LOGGING_LEVEL",
            "SERVING_NAMESPACE",
            "SERVING_CONFIGURATION",
            "SERVING_REVISION",
            "SERVING_POD",
            "SERVING_POD_IP",
        ]
    );
}

#[test]
fn each_missing_required_var_is_named() {
    for var in VARS.iter().filter(|v| v.presence == Presence::Required) {
        let err = Config::from_env(&without(&[var.name])).unwrap_err();
        assert_eq!(err, ConfigError::Missing { key: var.name });
        assert_eq!(err.key(), var.name);
        assert_eq!(
            err.to_string(),
            format!("required key {} missing value", var.name)
        );
    }
}

#[test]
fn empty_environment_reports_the_first_var() {
    let err = Config::from_env(&HashMap::<String, String>::new()).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Missing {
            key: "CONTAINER_CONCURRENCY"
        }
    );
}

#[test]
fn first_error_in_table_order_wins() {
    // USER_PORT is missing and SERVING_POD_IP too, but CONTAINER_CONCURRENCY comes first.
    let mut env = without(&["USER_PORT", "SERVING_POD_IP"]);
    env.insert("CONTAINER_CONCURRENCY".into(), "abc".into());
    assert_eq!(
        Config::from_env(&env).unwrap_err().key(),
        "CONTAINER_CONCURRENCY"
    );

    env.insert("CONTAINER_CONCURRENCY".into(), "1".into());
    assert_eq!(Config::from_env(&env).unwrap_err().key(), "USER_PORT");
}

#[test]
fn only_required_vars_gives_defaults() {
    let required: HashMap<String, String> = env()
        .into_iter()
        .filter(|(k, _)| {
            VARS.iter()
                .any(|v| v.name == k && v.presence == Presence::Required)
        })
        .collect();
    assert_eq!(required.len(), 12);
    let config = Config::from_env(&required).unwrap();
    assert_eq!(config.revision_response_start_timeout_seconds, 0);
    assert_eq!(config.revision_idle_timeout_seconds, 0);
    assert_eq!(config.serving_readiness_probe, "");
    assert!(!config.enable_http_full_duplex);
    assert!(!config.enable_http2_auto_detection);
    assert!(!config.enable_multi_container_probes);
    assert_eq!(config.serving_service, "");
    assert_eq!(config.observability_config, "");
    assert_eq!(config.queue_proxy_tls_min_version, "");
    assert_eq!(config.queue_proxy_tls_max_version, "");
    assert_eq!(config.queue_proxy_tls_cipher_suites, "");
    assert_eq!(config.queue_proxy_tls_curve_preferences, "");
    assert_eq!(config.admin_port, 8022);
    assert_eq!(config.metrics_port, 9090);
    assert_eq!(config.worker_threads, None);
}

#[test]
fn required_strings_may_be_empty() {
    let env = with(&[
        ("SERVING_NAMESPACE", ""),
        ("SERVING_CONFIGURATION", ""),
        ("SERVING_REVISION", ""),
        ("SERVING_POD", ""),
        ("SERVING_POD_IP", ""),
        ("QUEUE_SERVING_TLS_PORT", ""),
    ]);
    let config = Config::from_env(&env).unwrap();
    assert_eq!(config.serving_namespace, "");
    assert_eq!(config.serving_pod, "");
    assert_eq!(config.queue_serving_tls_port, "");
}

#[test]
fn strings_are_taken_verbatim() {
    let probe = r#"{"tcpSocket":{"port":8080,"host":"127.0.0.1"},"successThreshold":1}"#;
    let env = with(&[
        ("SERVING_READINESS_PROBE", probe),
        ("SERVING_LOGGING_LEVEL", " debug "),
        ("QUEUE_SERVING_TLS_PORT", "not-a-port"),
    ]);
    let config = Config::from_env(&env).unwrap();
    assert_eq!(config.serving_readiness_probe, probe);
    assert_eq!(config.serving_logging_level, " debug ");
    assert_eq!(config.queue_serving_tls_port, "not-a-port");
}

#[test]
fn malformed_int_is_named() {
    let err = Config::from_env(&with(&[("CONTAINER_CONCURRENCY", "abc")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"assigning CONTAINER_CONCURRENCY: converting "abc" to type int: invalid syntax"#
    );
    assert_eq!(
        err,
        parse_err("CONTAINER_CONCURRENCY", "abc", "int", NumError::Syntax)
    );
}

#[test]
fn every_int_and_bool_var_rejects_empty_and_garbage() {
    let typed = VARS.iter().filter(|v| v.ty != "string");
    let mut seen = 0;
    for var in typed {
        seen += 1;
        for bad in ["", "x", " 1"] {
            let err = Config::from_env(&with(&[(var.name, bad)])).unwrap_err();
            assert_eq!(
                err,
                parse_err(var.name, bad, var.ty, NumError::Syntax),
                "{}={bad:?}",
                var.name
            );
        }
    }
    // 4 ints, 3 bools, 5 ports, 1 thread count, 3 durations.
    assert_eq!(seen, 16);
}

#[test]
fn ints_use_go_base_prefixes() {
    for (text, want) in [
        ("0x10", 16),
        ("0X1f", 31),
        ("010", 8),
        ("0o10", 8),
        ("0b101", 5),
        ("1_000", 1000),
        ("+7", 7),
        ("-1", -1),
    ] {
        let env = with(&[
            ("CONTAINER_CONCURRENCY", text),
            ("REVISION_TIMEOUT_SECONDS", text),
            ("REVISION_IDLE_TIMEOUT_SECONDS", text),
            ("REVISION_RESPONSE_START_TIMEOUT_SECONDS", text),
        ]);
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.container_concurrency, want, "{text}");
        assert_eq!(config.revision_timeout_seconds, want, "{text}");
        assert_eq!(config.revision_idle_timeout_seconds, want, "{text}");
        assert_eq!(
            config.revision_response_start_timeout_seconds, want,
            "{text}"
        );
    }
}

#[test]
fn int_overflow_and_bad_octal_are_errors() {
    let err = Config::from_env(&with(&[(
        "REVISION_TIMEOUT_SECONDS",
        "9223372036854775808",
    )]))
    .unwrap_err();
    assert_eq!(
        err,
        parse_err(
            "REVISION_TIMEOUT_SECONDS",
            "9223372036854775808",
            "int",
            NumError::Range
        )
    );
    assert!(err.to_string().ends_with(": value out of range"), "{err}");

    let err = Config::from_env(&with(&[("CONTAINER_CONCURRENCY", "09")])).unwrap_err();
    assert_eq!(
        err,
        parse_err("CONTAINER_CONCURRENCY", "09", "int", NumError::Syntax)
    );
}

#[test]
fn bools_use_go_spellings() {
    for (text, want) in [
        ("1", true),
        ("T", true),
        ("True", true),
        ("f", false),
        ("FALSE", false),
    ] {
        let env = with(&[
            ("ENABLE_HTTP_FULL_DUPLEX", text),
            ("ENABLE_HTTP2_AUTO_DETECTION", text),
            ("ENABLE_MULTI_CONTAINER_PROBES", text),
        ]);
        let config = Config::from_env(&env).unwrap();
        assert_eq!(config.enable_http_full_duplex, want, "{text}");
        assert_eq!(config.enable_http2_auto_detection, want, "{text}");
        assert_eq!(config.enable_multi_container_probes, want, "{text}");
    }
    let err = Config::from_env(&with(&[("ENABLE_HTTP_FULL_DUPLEX", "yes")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"assigning ENABLE_HTTP_FULL_DUPLEX: converting "yes" to type bool: invalid syntax"#
    );
}

#[test]
fn ports_are_checked() {
    let config = Config::from_env(&with(&[
        ("QUEUE_SERVING_PORT", "8013"),
        ("USER_PORT", "08081"),
    ]))
    .unwrap();
    assert_eq!(config.queue_serving_port, 8013);
    assert_eq!(config.user_port, 8081);

    let err = Config::from_env(&with(&[("USER_PORT", "notaport")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"assigning USER_PORT: converting "notaport" to type port: invalid syntax"#
    );
    let err = Config::from_env(&with(&[("QUEUE_SERVING_PORT", "65536")])).unwrap_err();
    assert_eq!(
        err,
        parse_err("QUEUE_SERVING_PORT", "65536", "port", NumError::Range)
    );
}

#[test]
fn extensions() {
    let config = Config::from_env(&with(&[
        ("QUEUE_PROXY_ADMIN_PORT", "18022"),
        ("QUEUE_PROXY_METRICS_PORT", "0"),
        ("QUEUE_PROXY_WORKER_THREADS", "0x4"),
    ]))
    .unwrap();
    assert_eq!(config.admin_port, 18022);
    assert_eq!(config.metrics_port, 0);
    assert_eq!(config.worker_threads, Some(4));

    for bad in ["0", "-1", "-0x10"] {
        let err = Config::from_env(&with(&[("QUEUE_PROXY_WORKER_THREADS", bad)])).unwrap_err();
        assert_eq!(
            err,
            parse_err(
                "QUEUE_PROXY_WORKER_THREADS",
                bad,
                "positive int",
                NumError::Range
            )
        );
    }
    for var in VARS.iter().filter(|v| v.name.starts_with("QUEUE_PROXY_")) {
        let is_tls = var.name.starts_with("QUEUE_PROXY_TLS_");
        assert_eq!(var.origin == Origin::Extension, !is_tls, "{}", var.name);
    }
}

#[test]
fn header_read_timeout_defaults_to_upstreams_60_seconds() {
    let config = Config::from_env(&with(&[])).unwrap();
    assert_eq!(config.header_read_timeout, Duration::from_secs(60));
    let config =
        Config::from_env(&with(&[("QUEUE_PROXY_HEADER_READ_TIMEOUT_MS", "1500")])).unwrap();
    assert_eq!(config.header_read_timeout, Duration::from_millis(1500));
    let err = Config::from_env(&with(&[("QUEUE_PROXY_HEADER_READ_TIMEOUT_MS", "-1")])).unwrap_err();
    assert_eq!(err.key(), "QUEUE_PROXY_HEADER_READ_TIMEOUT_MS");
}

#[test]
fn ignored_vars_are_neither_required_nor_parsed() {
    let mut env = without(IGNORED_VARS);
    assert!(Config::from_env(&env).is_ok());
    for name in IGNORED_VARS {
        env.insert((*name).into(), "\u{0}garbage".into());
        assert!(VARS.iter().all(|v| v.name != *name));
    }
    assert!(Config::from_env(&env).is_ok());
}

#[test]
fn borrowed_hashmap_is_a_source() {
    let owned = env();
    let borrowed: HashMap<&str, &str> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        Config::from_env(&borrowed).unwrap(),
        Config::from_env(&owned).unwrap()
    );
}

struct NotUnicodeFor(&'static str, HashMap<String, String>);

impl EnvSource for NotUnicodeFor {
    fn get(&self, key: &str) -> Result<Option<String>, NotUnicode> {
        if key == self.0 {
            Err(NotUnicode)
        } else {
            EnvSource::get(&self.1, key)
        }
    }
}

#[test]
fn non_utf8_value_is_named() {
    for name in ["SERVING_POD", "OBSERVABILITY_CONFIG"] {
        let err = Config::from_env(&NotUnicodeFor(name, env())).unwrap_err();
        assert_eq!(err, ConfigError::NotUnicode { key: name });
        assert_eq!(
            err.to_string(),
            format!("assigning {name}: value is not valid UTF-8")
        );
    }
}

#[test]
fn process_env_reads_the_process_environment() {
    // Cargo sets this for the test process; nothing here writes the environment.
    assert_eq!(
        ProcessEnv.get("CARGO_MANIFEST_DIR"),
        Ok(Some(env!("CARGO_MANIFEST_DIR").to_owned()))
    );
    assert_eq!(ProcessEnv.get("QUEUE_PROXY_SURELY_UNSET_7f3a9c"), Ok(None));
}

#[test]
fn help_lists_every_var_once_in_its_section() {
    let help = help_text();
    let (upstream, extensions) = help
        .split_once("Extensions (ours; upstream does not read them):")
        .expect("extensions section");
    for var in VARS {
        let line = format!("  {}  ({}, {})", var.name, var.ty, var.presence);
        let (inside, outside) = match var.origin {
            Origin::Upstream => (upstream, extensions),
            Origin::Extension => (extensions, upstream),
        };
        assert_eq!(inside.matches(&line).count(), 1, "{line:?} in\n{help}");
        assert!(!outside.contains(&line), "{line:?}");
        assert!(inside.contains(var.description), "{}", var.name);
    }
    assert!(help.contains("  CONTAINER_CONCURRENCY  (int, required)\n"));
    assert!(help.contains("  SERVING_SERVICE  (string, default \"\")\n"));
    assert!(help.contains("  QUEUE_PROXY_ADMIN_PORT  (port, default 8022)\n"));
    assert!(help.contains("  QUEUE_PROXY_WORKER_THREADS  (positive int, optional)\n"));
    assert!(help.contains("\n  SYSTEM_NAMESPACE, HOST_IP, ROOT_CA\n"));
}

#[test]
fn var_rows_describe_their_fields() {
    assert_eq!(
        *var("REVISION_IDLE_TIMEOUT_SECONDS"),
        Var {
            name: "REVISION_IDLE_TIMEOUT_SECONDS",
            ty: "int",
            presence: Presence::Default("0"),
            origin: Origin::Upstream,
            description: "Max seconds between response writes; 0 disables.",
        }
    );
    // 24 upstream variables and 8 extensions.
    assert_eq!(VARS.len(), 32);
    let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), VARS.len(), "duplicate names");
}
