//! `GET /healthz` and `GET /readyz`, for load balancers, uptime checks and
//! orchestrators. Both are open to every client: they tell nothing but
//! whether to send traffic here.

use super::{snapshot, text};
use crate::session::Env;

const PLAIN: &str = "text/plain; charset=utf-8";

/// 200 while the central loop turns: it answered a question within
/// `LOOP_ANSWER_TIMEOUT`. 503 otherwise.
pub async fn healthz(env: &Env) -> Vec<u8> {
    if env.status.draining.get() {
        return text(503, PLAIN, "shutting down\n");
    }
    match snapshot(env).await {
        Some(_) => text(200, PLAIN, "ok\n"),
        None => text(503, PLAIN, "the central loop is not answering\n"),
    }
}

/// 200 while a new interview would be taken; 503 once shutdown has begun,
/// at `limits.max_sessions`, or when the loop does not answer.
pub async fn readyz(env: &Env) -> Vec<u8> {
    if env.status.draining.get() {
        return text(503, PLAIN, "shutting down\n");
    }
    match snapshot(env).await {
        None => text(503, PLAIN, "the central loop is not answering\n"),
        Some(_) if env.status.draining.get() => text(503, PLAIN, "shutting down\n"),
        Some(s) if s.admitted >= s.max_sessions => text(
            503,
            PLAIN,
            &format!(
                "at capacity: {} of limits.max_sessions = {} sessions\n",
                s.admitted, s.max_sessions
            ),
        ),
        Some(s) => text(
            200,
            PLAIN,
            &format!("ready: {} of {} sessions\n", s.admitted, s.max_sessions),
        ),
    }
}
