//! Tunnels an upgraded connection (websocket and friends) between the client and
//! the app once the app has answered 101, as Go's ReverseProxy does after
//! hijacking the client connection.
//!
//! The request's [`Completion`] (breaker slot, in-flight stats) lives as long as
//! the tunnel: upstream counts an upgraded connection as one request for its whole
//! life.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Completion;

/// Starts copying bytes both ways in the background until either side closes.
pub(super) fn spawn_tunnel(client: OnUpgrade, app: OnUpgrade, completion: Completion) {
    tokio::spawn(async move {
        let _completion = completion;
        let (client, app) = tokio::join!(client, app);
        match (client, app) {
            (Ok(client), Ok(app)) => {
                let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut app).await {
                    tracing::debug!(error = %err, "upgraded connection ended with an error");
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "upgrade failed");
            }
        }
    });
}
