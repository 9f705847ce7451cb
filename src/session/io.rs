//! A session's side of the WebSocket: bounded writes, the close handshake,
//! and the wait for whatever happens next.

use std::time::Instant;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use smol::future::FutureExt;
use smol::Timer;

use super::{Assessing, Control, Session, Wake, CLOSE_REPLY_TIMEOUT, SEND_TIMEOUT};
use crate::handshake::Ws;
use crate::protocol::Stamp;

impl Session {
    /// Lets go of a client that has gone. If it sent a close frame,
    /// tungstenite has queued the reply; flushing sends it, completing the
    /// close handshake.
    pub(super) async fn drop_client(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws
                .flush()
                .or(async {
                    Timer::after(CLOSE_REPLY_TIMEOUT).await;
                    Ok(())
                })
                .await;
        }
    }
    pub(super) async fn send(&mut self, event: Value) {
        self.send_all(vec![event]).await;
    }

    /// Sends events as one write. A client that cannot take them within
    /// [`SEND_TIMEOUT`] is treated as gone.
    pub(super) async fn send_all(&mut self, events: Vec<Value>) {
        let Some(ws) = &mut self.ws else {
            return;
        };
        let stamp = Stamp(&self.ids);
        let write = async {
            for event in events {
                ws.feed(Message::text(stamp.apply(event).to_string()))
                    .await?;
            }
            ws.flush().await
        };
        if !with_timeout(write).await {
            log::info!(
                "session {}: client not reading; dropping the connection",
                self.shared.id
            );
            self.ws = None;
        }
    }

    pub(super) async fn send_raw(&mut self, message: Message) {
        if let Some(ws) = &mut self.ws {
            if !with_timeout(ws.send(message)).await {
                self.ws = None;
            }
        }
    }

    /// Sends a close frame and waits briefly for the client's reply.
    pub(super) async fn close(&mut self, code: CloseCode, reason: &str) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if !with_timeout(ws.close(Some(frame))).await {
            return;
        }
        let drain = async { while let Some(Ok(_)) = ws.next().await {} };
        drain
            .or(async {
                Timer::after(CLOSE_REPLY_TIMEOUT).await;
            })
            .await;
    }
}

/// True when the write finished in time and without error.
async fn with_timeout(write: impl std::future::Future<Output = Result<(), WsError>>) -> bool {
    async { write.await.is_ok() }
        .or(async {
            Timer::after(SEND_TIMEOUT).await;
            false
        })
        .await
}

/// Waits for the next thing the session must handle. Control messages come
/// first so that a busy client cannot delay shutdown.
pub(super) async fn next_wake(
    ws: &mut Option<Ws>,
    assessing: &Option<Assessing>,
    control: &async_channel::Receiver<Control>,
    next_ping: Instant,
) -> Wake {
    let connected = ws.is_some();
    let control = async {
        match control.recv().await {
            Ok(c) => Wake::Control(c),
            // The loop is gone; it will drop us. Nothing to do meanwhile.
            Err(_) => std::future::pending().await,
        }
    };
    let assessment = async {
        match assessing {
            Some(a) => {
                async { Wake::Assessed(a.job.result().await) }
                    .or(async {
                        Timer::at(a.deadline).await;
                        Wake::AssessmentTimedOut
                    })
                    .or(async {
                        Timer::at(a.next_keepalive).await;
                        Wake::Keepalive
                    })
                    .await
            }
            None => std::future::pending().await,
        }
    };
    let frame = async {
        match ws {
            Some(ws) => Wake::Frame(ws.next().await),
            None => std::future::pending().await,
        }
    };
    let ping = async {
        if !connected {
            return std::future::pending().await;
        }
        Timer::at(next_ping).await;
        Wake::Ping
    };
    control.or(assessment).or(frame).or(ping).await
}
