//! Tunnels an upgraded connection (websocket and friends) between the client and
//! the app once the app has answered 101, as Go's ReverseProxy does after
//! hijacking the client connection.
//!
//! The request's [`Completion`] (breaker slot, in-flight stats) lives as long as
//! the tunnel: upstream counts an upgraded connection as one request for its whole
//! life, and the revision's timers cap it from the request's arrival: upstream's
//! write tracking never sees the hijacked connection, so the response-start and
//! idle timers fire at their full duration too. The tunnel is cut without a close
//! frame, as upstream's is.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Completion;

/// Starts copying bytes both ways in the background until either side closes.
pub(super) fn spawn_tunnel(client: OnUpgrade, app: OnUpgrade, completion: Completion) {
    tokio::spawn(async move {
        let deadline = completion.tunnel_deadline;
        let _completion = completion;
        let tunnel = async {
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
        };
        match deadline {
            Some(deadline) => {
                if tokio::time::timeout_at(deadline, tunnel).await.is_err() {
                    tracing::debug!("upgraded connection closed by the request timeout");
                }
            }
            None => tunnel.await,
        }
    });
}
