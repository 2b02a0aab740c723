//! Fetching one application target: per-target timeout, a streamed body-size limit, gzip, and
//! content negotiation preferring OpenMetrics.

use std::time::Duration;

use crate::exposition::Format;
use crate::http::error_chain;

/// `Accept` header: OpenMetrics 1.0 first, then the Prometheus text format, then anything.
pub const ACCEPT: &str = Format::ACCEPT_HEADER;

/// Why fetching a target failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The whole scrape (connect, headers and body) took longer than the timeout.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The body grew past the limit; the download was cut off there.
    #[error("body larger than {0} bytes")]
    BodyLimit(u64),
    /// The target answered with a non-success status.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// The request could not be sent or the body could not be read.
    #[error("request failed: {0}")]
    Connect(String),
    /// The body is not UTF-8 text.
    #[error("body is not UTF-8 text (valid up to byte {0})")]
    NotUtf8(usize),
}

impl FetchError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::BodyLimit(_) => "body_limit",
            FetchError::HttpStatus(_) => "http_status",
            FetchError::Connect(_) => "connect",
            FetchError::NotUtf8(_) => "parse",
        }
    }
}

/// A fetched body and the format its `Content-Type` announced.
#[derive(Debug)]
pub struct Fetched {
    /// The body, decompressed.
    pub body: String,
    /// Text format to parse it with.
    pub format: Format,
}

/// The HTTP client for application targets: rustls, gzip, no proxy from the environment
/// (targets are pod IPs on this node).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .gzip(true)
        .user_agent(concat!("kubesignal-agent/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Fetches `url`, giving up after `timeout` and as soon as the body exceeds `max_body_bytes`.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    max_body_bytes: u64,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(timeout, fetch_inner(client, url, max_body_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(timeout)),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    url: &str,
    max_body_bytes: u64,
) -> Result<Fetched, FetchError> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .send()
        .await
        .map_err(|e| FetchError::Connect(error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::HttpStatus(status.as_u16()));
    }
    let format = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(Format::from_content_type)
        .unwrap_or(Format::PrometheusText);
    // Content-Length is only a hint (and absent for gzip or chunked bodies); the streamed count
    // below is what enforces the limit.
    if response
        .content_length()
        .is_some_and(|len| len > max_body_bytes)
    {
        return Err(FetchError::BodyLimit(max_body_bytes));
    }
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Connect(error_chain(&e)))?
    {
        if body.len() as u64 + chunk.len() as u64 > max_body_bytes {
            return Err(FetchError::BodyLimit(max_body_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    let body =
        String::from_utf8(body).map_err(|e| FetchError::NotUtf8(e.utf8_error().valid_up_to()))?;
    Ok(Fetched { body, format })
}

/// Offset of a target inside the spread window: the same for the same URL at every collection,
/// so each target is scraped at a steady phase (FNV-1a, stable across builds and platforms).
pub fn spread_offset(url: &str, window: Duration) -> Duration {
    let window_ms = window.as_millis() as u64;
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Duration::from_millis(hash % window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_offsets_are_stable_inside_the_window_and_differ_between_targets() {
        let w = Duration::from_secs(10);
        let a = spread_offset("http://10.0.0.1:8080/metrics", w);
        assert_eq!(a, spread_offset("http://10.0.0.1:8080/metrics", w));
        let offsets: std::collections::HashSet<Duration> = (0..50)
            .map(|i| spread_offset(&format!("http://10.0.0.{i}:8080/metrics"), w))
            .collect();
        assert!(offsets.iter().all(|o| *o < w));
        assert!(
            offsets.len() > 40,
            "50 targets got only {} offsets",
            offsets.len()
        );
        assert_eq!(spread_offset("x", Duration::ZERO), Duration::ZERO);
    }
}
