//! The reverse proxy to the app, upstream's `httputil.ReverseProxy` step (§3
//! step 12): header rules, protocol choice, streaming, upgrades and 502s.
//!
//! HTTP/2 in goes out as h2c with prior knowledge and HTTP/1.x goes out as
//! HTTP/1.1. Bodies stream frame by frame both ways, trailers included, with no
//! buffering of whole bodies; hyper flushes every chunk as it is written. An
//! upgrade (websocket) is tunnelled byte for byte once the app answers 101. The
//! pieces the activator reuses ([`client::AppClient`], [`headers`]) are public.

pub mod client;
pub mod headers;
mod upgrade;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use std::net::IpAddr;

use crate::body::{Completion, ProxyBody};
use crate::error::{ProxyError, go_http_error};
use client::AppClient;

/// Forwards requests to the app.
#[derive(Clone)]
pub struct Proxy {
    client: AppClient,
    /// `127.0.0.1:<port>`: the Host Go's transport uses when a request has none.
    default_host: HeaderValue,
}

impl Proxy {
    /// A proxy sending everything through `client`.
    pub fn new(client: AppClient) -> Self {
        let default_host = HeaderValue::from_str(&client.addr().to_string())
            .expect("a socket address is a valid header value");
        Proxy {
            client,
            default_host,
        }
    }

    /// The app's address.
    pub fn app_addr(&self) -> std::net::SocketAddr {
        self.client.addr()
    }

    /// Sends `req` to the app and returns its response, holding `completion` until
    /// the response (or the upgraded connection) is over. Transport failures become
    /// upstream's 502.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: IpAddr,
        mut completion: Completion,
    ) -> Response<ProxyBody> {
        let upgrade = match req.version() {
            Version::HTTP_2 => None,
            _ => headers::upgrade_type(req.headers()),
        };
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let out = self.outbound(req, peer, upgrade.clone());

        let (mut resp, checkin) = match self.client.send(out).await {
            Ok(sent) => sent,
            Err(err) => return ProxyError::from(err).into_response(),
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let (Some(on_client), Some(asked)) = (client_upgrade, upgrade) else {
                return go_http_error(
                    StatusCode::BAD_GATEWAY,
                    "backend tried to switch protocol when none was requested",
                );
            };
            let offered = resp.headers().get(header::UPGRADE);
            if !offered.is_some_and(|o| o.as_bytes().eq_ignore_ascii_case(asked.as_bytes())) {
                return go_http_error(
                    StatusCode::BAD_GATEWAY,
                    "backend tried to switch to a protocol that was not requested",
                );
            }
            let on_app = hyper::upgrade::on(&mut resp);
            upgrade::spawn_tunnel(on_client, on_app, completion);
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, ProxyBody::empty());
        }

        headers::from_app(resp.headers_mut(), false);
        completion.checkin = checkin;
        resp.map(|body| ProxyBody::upstream(body, completion))
    }

    /// The request as the app gets it: header rules applied, HTTP/1.1 or h2c, and
    /// the Host (or `:authority`) the client sent, else the app's address.
    fn outbound(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        upgrade: Option<HeaderValue>,
    ) -> Request<client::UpstreamBody> {
        let (mut parts, body) = req.into_parts();
        headers::to_app(&mut parts.headers, peer, upgrade);
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let host = parts
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| {
                let authority = parts.uri.authority()?;
                HeaderValue::from_str(authority.as_str()).ok()
            })
            .unwrap_or_else(|| self.default_host.clone());

        if parts.version == Version::HTTP_2 {
            // h2 carries the host in :authority, which hyper takes from the URI.
            parts.headers.remove(header::HOST);
            let authority = Authority::try_from(host.as_bytes())
                .unwrap_or_else(|_| Authority::try_from(self.default_host.as_bytes()).unwrap());
            let mut uri = Uri::builder().scheme(Scheme::HTTP).authority(authority);
            uri = uri.path_and_query(path);
            parts.uri = uri.build().expect("scheme, authority and path make a URI");
        } else {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path);
            parts.headers.insert(header::HOST, host);
        }
        Request::from_parts(parts, Either::Left(body))
    }
}
