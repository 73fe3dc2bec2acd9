//! The TCP probe, and the connect every probe kind starts with.
//!
//! Mirrors upstream's `health.TCPProbe` (`pkg/queue/health/probe.go`): the probe
//! passes when a connection to `host:port` opens within the attempt's timeout; the
//! connection is closed at once and nothing is sent.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpStream, lookup_host};

use super::error::{DialError, ProbeError};

/// Where an empty `host` points: the pod's loopback, where the app listens.
pub(super) const LOOPBACK: &str = "127.0.0.1";

/// `host:port` as an address (IPv6 literals bracketed), for messages and `Host`.
pub(super) fn authority(host: &str, port: u16) -> String {
    let host = if host.is_empty() { LOOPBACK } else { host };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens a TCP connection to `host:port` (an empty host is loopback). A host
/// name is resolved and its addresses are tried in order. No timeout here: each
/// caller bounds its whole attempt.
pub(super) async fn connect(host: &str, port: u16) -> Result<TcpStream, DialError> {
    let host = if host.is_empty() { LOOPBACK } else { host };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => lookup_host((host, port))
            .await
            .map_err(|source| DialError::Lookup {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(source) => last = Some((addr, source)),
        }
    }
    Err(match last {
        Some((addr, source)) => DialError::Connect {
            addr: addr.to_string(),
            source,
        },
        None => DialError::Lookup {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"),
        },
    })
}

/// One TCP probe attempt.
pub(super) async fn probe(host: &str, port: u16, timeout: Duration) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, connect(host, port)).await {
        // Dropping the stream closes it: the probe only wanted to know it opens.
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(DialError::Timeout {
            addr: authority(host, port),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn authority_brackets_ipv6() {
        assert_eq!(authority("", 80), "127.0.0.1:80");
        assert_eq!(authority("::1", 80), "[::1]:80");
        assert_eq!(authority("[::1]", 80), "[::1]:80");
        assert_eq!(authority("localhost", 80), "localhost:80");
    }

    #[tokio::test]
    async fn connects_to_empty_host_as_loopback_and_reports_refusals() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        probe("", port, Duration::from_secs(1)).await.unwrap();
        drop(listener);
        let err = probe("127.0.0.1", port, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
