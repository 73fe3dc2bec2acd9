//! `QUEUE_PROXY_TLS_*` → rustls, mirroring knative.dev/pkg `network/tls/config.go`
//! (`DefaultConfigFromEnv` with the `QUEUE_PROXY_` prefix):
//!
//! - an empty variable leaves the library default, except the minimum version,
//!   which defaults to TLS 1.3;
//! - versions are exactly `1.2` or `1.3`;
//! - cipher suites and curves are comma-separated, each name trimmed, empty items
//!   skipped; cipher-suite names are those of Go's `tls.CipherSuites()` (the
//!   "secure" list: an insecure or unknown name is an error); curve names are
//!   Go's constant names (`CurveP256`) or the standard ones (`P-256`).
//!
//! Go's semantics carried over: like `tls.Config.CipherSuites`, the list only
//! selects TLS 1.2 suites; TLS 1.3 suites are not configurable in Go, so naming
//! one is accepted and every TLS 1.3 suite stays enabled.
//!
//! Where rustls with the *ring* provider (no aws-lc-rs: it needs cmake) cannot
//! do what Go can, startup fails with a message naming the variable and the
//! value instead of silently serving something else: the four ECDHE CBC suites
//! Go still lists as secure, `P-521` and `X25519MLKEM768`. A maximum version
//! below the minimum is also a startup error; Go would start and fail every
//! handshake.

use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::server::ResolvesServerCert;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use std::sync::Arc;

use crate::config::Config;

/// `QUEUE_PROXY_TLS_MIN_VERSION`.
pub const MIN_VERSION_VAR: &str = "QUEUE_PROXY_TLS_MIN_VERSION";
/// `QUEUE_PROXY_TLS_MAX_VERSION`.
pub const MAX_VERSION_VAR: &str = "QUEUE_PROXY_TLS_MAX_VERSION";
/// `QUEUE_PROXY_TLS_CIPHER_SUITES`.
pub const CIPHER_SUITES_VAR: &str = "QUEUE_PROXY_TLS_CIPHER_SUITES";
/// `QUEUE_PROXY_TLS_CURVE_PREFERENCES`.
pub const CURVE_PREFERENCES_VAR: &str = "QUEUE_PROXY_TLS_CURVE_PREFERENCES";

/// ALPN protocols offered, in preference order (Go's `ListenAndServeTLS` default).
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A `QUEUE_PROXY_TLS_*` value that cannot be honoured. Every message names the
/// variable and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not `1.2` nor `1.3` (knative.dev/pkg's wording).
    #[error(
        "invalid {var} {value:?}: unsupported TLS version {value:?}: must be \"1.2\" or \"1.3\""
    )]
    Version { var: &'static str, value: String },
    /// The maximum version is below the minimum: nothing could be negotiated.
    #[error(
        "invalid {MAX_VERSION_VAR} {max:?}: below {MIN_VERSION_VAR} {min:?}, no TLS version is left"
    )]
    EmptyVersionRange {
        min: &'static str,
        max: &'static str,
    },
    /// Not a name of Go's secure cipher-suite list.
    #[error("invalid {CIPHER_SUITES_VAR}: unknown cipher suite {name:?}")]
    UnknownCipherSuite { name: String },
    /// A suite Go accepts but rustls does not implement (the CBC ones).
    #[error(
        "invalid {CIPHER_SUITES_VAR}: cipher suite {name:?} is not supported by this queue-proxy \
         (rustls implements no CBC suites)"
    )]
    UnsupportedCipherSuite { name: String },
    /// Not a curve name Go accepts.
    #[error("invalid {CURVE_PREFERENCES_VAR}: unknown curve {name:?}")]
    UnknownCurve { name: String },
    /// A curve Go accepts but the *ring* provider does not implement.
    #[error(
        "invalid {CURVE_PREFERENCES_VAR}: curve {name:?} is not supported by this queue-proxy \
         ({why})"
    )]
    UnsupportedCurve { name: String, why: &'static str },
}

/// A TLS protocol version the queue-proxy can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn label(self) -> &'static str {
        match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        }
    }

    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            Self::Tls12 => &TLS12,
            Self::Tls13 => &TLS13,
        }
    }
}

/// The TLS server settings the environment asks for.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    /// Enabled versions, newest first; never empty.
    pub versions: Vec<TlsVersion>,
    /// Enabled TLS 1.2 suites in the configured order; `None` means the provider's.
    pub tls12_suites: Option<Vec<SupportedCipherSuite>>,
    /// Key-exchange groups in preference order; `None` means the provider's.
    pub kx_groups: Option<Vec<&'static dyn SupportedKxGroup>>,
}

impl TlsPolicy {
    /// Reads the four `QUEUE_PROXY_TLS_*` variables of `config`.
    pub fn from_config(config: &Config) -> Result<TlsPolicy, PolicyError> {
        TlsPolicy::parse(
            &config.queue_proxy_tls_min_version,
            &config.queue_proxy_tls_max_version,
            &config.queue_proxy_tls_cipher_suites,
            &config.queue_proxy_tls_curve_preferences,
        )
    }

    /// Parses the raw values of min version, max version, cipher suites and curve
    /// preferences; an empty string means "not set".
    pub fn parse(
        min: &str,
        max: &str,
        cipher_suites: &str,
        curves: &str,
    ) -> Result<TlsPolicy, PolicyError> {
        let min = match min {
            "" => TlsVersion::Tls13,
            value => parse_version(MIN_VERSION_VAR, value)?,
        };
        let max = match max {
            "" => None,
            value => Some(parse_version(MAX_VERSION_VAR, value)?),
        };
        if let Some(max) = max.filter(|max| *max < min) {
            return Err(PolicyError::EmptyVersionRange {
                min: min.label(),
                max: max.label(),
            });
        }
        let versions = [TlsVersion::Tls13, TlsVersion::Tls12]
            .into_iter()
            .filter(|v| *v >= min && max.is_none_or(|max| *v <= max))
            .collect();
        Ok(TlsPolicy {
            versions,
            tls12_suites: parse_cipher_suites(cipher_suites)?,
            kx_groups: parse_curves(curves)?,
        })
    }

    /// The *ring* provider narrowed to this policy's suites and groups.
    pub fn provider(&self) -> CryptoProvider {
        let mut provider = ring::default_provider();
        if let Some(tls12) = &self.tls12_suites {
            // TLS 1.3 suites are not configurable (Go), so all of them stay.
            provider
                .cipher_suites
                .retain(|suite| suite.version() == &TLS13);
            provider.cipher_suites.extend(tls12.iter().copied());
        }
        if let Some(groups) = &self.kx_groups {
            provider.kx_groups.clone_from(groups);
        }
        provider
    }

    /// A server config with this policy, no client authentication, ALPN `h2` and
    /// `http/1.1`, and certificates from `certs` whatever the SNI.
    pub fn server_config(
        &self,
        provider: Arc<CryptoProvider>,
        certs: Arc<dyn ResolvesServerCert>,
    ) -> Result<ServerConfig, rustls::Error> {
        let versions: Vec<_> = self.versions.iter().map(|v| v.rustls()).collect();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)?
            .with_no_client_auth()
            .with_cert_resolver(certs);
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

fn parse_version(var: &'static str, value: &str) -> Result<TlsVersion, PolicyError> {
    match value {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(PolicyError::Version {
            var,
            value: value.to_owned(),
        }),
    }
}

/// Go's comma-separated list rule: split, trim, skip empty items.
fn items(csv: &str) -> impl Iterator<Item = &str> {
    csv.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// What a Go cipher-suite name stands for here.
enum Suite {
    /// A TLS 1.3 suite: accepted, but (as in Go) not configurable.
    Tls13,
    /// A TLS 1.2 suite rustls implements.
    Tls12(SupportedCipherSuite),
    /// In Go's secure list, but not implemented by rustls.
    Unsupported,
}

/// Go's `tls.CipherSuites()`, by name.
fn go_secure_suite(name: &str) -> Option<Suite> {
    use ring::cipher_suite as cs;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            Suite::Tls13
        }
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            Suite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            Suite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            Suite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            Suite::Tls12(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Suite::Tls12(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Suite::Tls12(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" => Suite::Unsupported,
        _ => return None,
    })
}

/// The TLS 1.2 suites to enable; `None` when the list names none at all (Go's
/// default). A list of TLS 1.3 names only yields `Some(vec![])`: no TLS 1.2 suite,
/// as in Go.
fn parse_cipher_suites(csv: &str) -> Result<Option<Vec<SupportedCipherSuite>>, PolicyError> {
    let mut named_any = false;
    let mut tls12 = Vec::new();
    for name in items(csv) {
        named_any = true;
        match go_secure_suite(name) {
            Some(Suite::Tls13) => {}
            Some(Suite::Tls12(suite)) => {
                if !tls12.contains(&suite) {
                    tls12.push(suite);
                }
            }
            Some(Suite::Unsupported) => {
                return Err(PolicyError::UnsupportedCipherSuite {
                    name: name.to_owned(),
                });
            }
            None => {
                return Err(PolicyError::UnknownCipherSuite {
                    name: name.to_owned(),
                });
            }
        }
    }
    Ok(named_any.then_some(tls12))
}

fn parse_curves(csv: &str) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, PolicyError> {
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in items(csv) {
        let group = match name {
            "X25519" => ring::kx_group::X25519,
            "CurveP256" | "P-256" => ring::kx_group::SECP256R1,
            "CurveP384" | "P-384" => ring::kx_group::SECP384R1,
            "CurveP521" | "P-521" => {
                return Err(PolicyError::UnsupportedCurve {
                    name: name.to_owned(),
                    why: "the ring crypto provider has no P-521",
                });
            }
            "X25519MLKEM768" => {
                return Err(PolicyError::UnsupportedCurve {
                    name: name.to_owned(),
                    why: "the ring crypto provider has no ML-KEM",
                });
            }
            _ => {
                return Err(PolicyError::UnknownCurve {
                    name: name.to_owned(),
                });
            }
        };
        if !groups.iter().any(|g| g.name() == group.name()) {
            groups.push(group);
        }
    }
    Ok((!groups.is_empty()).then_some(groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{CipherSuite, NamedGroup};

    fn policy(min: &str, max: &str, suites: &str, curves: &str) -> TlsPolicy {
        TlsPolicy::parse(min, max, suites, curves).unwrap()
    }

    fn suite_ids(policy: &TlsPolicy) -> Vec<CipherSuite> {
        policy
            .provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect()
    }

    #[test]
    fn defaults_are_tls13_only_and_the_provider_defaults() {
        let p = policy("", "", "", "");
        assert_eq!(p.versions, [TlsVersion::Tls13]);
        assert!(p.tls12_suites.is_none() && p.kx_groups.is_none());
        assert_eq!(
            suite_ids(&p),
            ring::default_provider()
                .cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn versions_are_exactly_1_2_or_1_3() {
        assert_eq!(
            policy("1.2", "", "", "").versions,
            [TlsVersion::Tls13, TlsVersion::Tls12]
        );
        assert_eq!(policy("1.2", "1.2", "", "").versions, [TlsVersion::Tls12]);
        assert_eq!(policy("1.2", "1.3", "", "").versions.len(), 2);
        assert_eq!(policy("", "1.3", "", "").versions, [TlsVersion::Tls13]);
        for bad in ["1.0", "1.1", "1.2 ", "abc", "TLS12"] {
            let err = TlsPolicy::parse(bad, "", "", "").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid QUEUE_PROXY_TLS_MIN_VERSION {bad:?}: unsupported TLS version \
                     {bad:?}: must be \"1.2\" or \"1.3\""
                )
            );
            let err = TlsPolicy::parse("", bad, "", "").unwrap_err();
            assert_eq!(
                err,
                PolicyError::Version {
                    var: MAX_VERSION_VAR,
                    value: bad.to_owned()
                }
            );
        }
    }

    #[test]
    fn max_below_min_is_refused() {
        let err = TlsPolicy::parse("", "1.2", "", "").unwrap_err();
        assert_eq!(
            err,
            PolicyError::EmptyVersionRange {
                min: "1.3",
                max: "1.2"
            }
        );
        assert!(err.to_string().contains("QUEUE_PROXY_TLS_MAX_VERSION"));
    }

    #[test]
    fn cipher_suites_select_tls12_suites_and_keep_every_tls13_suite() {
        let p = policy(
            "1.2",
            "",
            " TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 ,,TLS_AES_128_GCM_SHA256,\
             TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "",
        );
        assert_eq!(
            suite_ids(&p),
            [
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        // Only TLS 1.3 names: no TLS 1.2 suite is left, as in Go.
        let p = policy("1.2", "", "TLS_AES_128_GCM_SHA256", "");
        assert_eq!(p.tls12_suites.as_deref(), Some(&[][..]));
        assert_eq!(suite_ids(&p).len(), 3);
        // Separators alone: the default.
        assert!(policy("", "", " , ", "").tls12_suites.is_none());
    }

    #[test]
    fn every_go_secure_suite_name_is_known() {
        for name in [
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ] {
            let p = policy("1.2", "", name, "");
            let tls12 = p.tls12_suites.unwrap();
            assert_eq!(
                tls12.len(),
                usize::from(!name.starts_with("TLS_AES") && !name.starts_with("TLS_CHACHA")),
                "{name}"
            );
            if let Some(suite) = tls12.first() {
                assert_eq!(format!("{:?}", suite.suite()), name);
            }
        }
    }

    #[test]
    fn unknown_insecure_and_cbc_suites_are_refused_by_name() {
        for name in [
            "DOES_NOT_EXIST",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
            "tls_aes_128_gcm_sha256",
        ] {
            let err = TlsPolicy::parse("", "", &format!("TLS_AES_128_GCM_SHA256,{name}"), "")
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid QUEUE_PROXY_TLS_CIPHER_SUITES: unknown cipher suite {name:?}")
            );
        }
        let err = TlsPolicy::parse("", "", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "").unwrap_err();
        assert_eq!(
            err,
            PolicyError::UnsupportedCipherSuite {
                name: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into()
            }
        );
        assert!(err.to_string().starts_with(
            "invalid QUEUE_PROXY_TLS_CIPHER_SUITES: cipher suite \
             \"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\" is not supported"
        ));
    }

    #[test]
    fn curves_take_go_and_standard_names_in_order() {
        let p = policy("", "", "", " P-384 ,X25519,,CurveP256,CurveP384");
        let names: Vec<_> = p.provider().kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [
                NamedGroup::secp384r1,
                NamedGroup::X25519,
                NamedGroup::secp256r1
            ]
        );
        assert!(policy("", "", "", ",").kx_groups.is_none());
    }

    #[test]
    fn unknown_and_unsupported_curves_are_refused_by_name() {
        let err = TlsPolicy::parse("", "", "", "X25519,CurveP128").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid QUEUE_PROXY_TLS_CURVE_PREFERENCES: unknown curve \"CurveP128\""
        );
        for name in ["P-521", "CurveP521", "X25519MLKEM768"] {
            let err = TlsPolicy::parse("", "", "", name).unwrap_err();
            assert!(
                matches!(&err, PolicyError::UnsupportedCurve { name: n, .. } if n == name),
                "{err}"
            );
            assert!(
                err.to_string().starts_with(&format!(
                    "invalid QUEUE_PROXY_TLS_CURVE_PREFERENCES: curve {name:?} is not supported"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn tls12_only_with_only_tls13_suites_cannot_build() {
        struct NoCert;
        impl std::fmt::Debug for NoCert {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("NoCert")
            }
        }
        impl ResolvesServerCert for NoCert {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                None
            }
        }
        let p = policy("1.2", "1.2", "TLS_AES_128_GCM_SHA256", "");
        let err = p
            .server_config(Arc::new(p.provider()), Arc::new(NoCert))
            .unwrap_err();
        assert!(err.to_string().contains("no usable cipher suites"), "{err}");

        let p = policy("1.2", "", "", "");
        let config = p
            .server_config(Arc::new(p.provider()), Arc::new(NoCert))
            .unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
