//! Talking to the kubelet and reading its payloads.

pub mod client;
pub mod kubeconfig;
