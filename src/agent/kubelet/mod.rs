//! The kubelet: its HTTPS client, and its three endpoints as plain data (the Summary API, the
//! pod list and the cAdvisor metrics we use).

pub mod cadvisor;
pub mod client;
pub mod kubeconfig;
pub mod pods;
pub mod summary;

use serde::{Deserialize, Deserializer};

/// Errors from decoding a kubelet payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The JSON did not match the expected shape; `path` is the field where decoding stopped.
    #[error("decoding the kubelet {endpoint} response: at {path}: {source}")]
    Json {
        /// The endpoint the payload came from, e.g. `/stats/summary`.
        endpoint: &'static str,
        /// Dotted path to the offending field (`.` for the document itself).
        path: String,
        /// What serde_json found wrong, with line and column.
        source: serde_json::Error,
    },
    /// The cAdvisor text could not be parsed.
    #[error("parsing the kubelet /metrics/cadvisor response: {0}")]
    Cadvisor(String),
}

/// Decodes `bytes` as JSON into `T`, naming the field path on error.
///
/// The first pass decodes without tracking the path, which costs about a third of the decoding
/// time on a large summary; only a payload that fails is decoded again to locate the field.
pub(crate) fn decode_json<'de, T: Deserialize<'de>>(
    endpoint: &'static str,
    bytes: &'de [u8],
) -> Result<T, PayloadError> {
    let first_error = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => e.path().to_string(),
        // Trailing characters after a valid document: the document itself is at fault.
        Ok(_) => ".".to_owned(),
    };
    Err(PayloadError::Json {
        endpoint,
        path,
        source: first_error,
    })
}

/// Go encodes a nil slice as `null`; treat it as empty.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
