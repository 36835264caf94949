//! Bearer-token protection for the admin API's TCP listener.

use std::path::Path;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::AdminError;

pub(super) fn read_token(path: &Path) -> Result<String, AdminError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminError::Token {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(AdminError::EmptyToken(path.to_path_buf()));
    }
    Ok(token)
}

/// Wraps `router` so every request must carry `Authorization: Bearer
/// <token>`. Without a token (loopback listener) the router is unchanged.
pub(super) fn require_token(router: Router, token: Option<String>) -> Router {
    match token {
        None => router,
        Some(token) => router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { check(req, next, &token).await }
        })),
    }
}

async fn check(req: Request, next: Next, token: &str) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response(),
    }
}

/// Compares without an early exit, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
