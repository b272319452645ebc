//! The transports: they move bytes and never see the protocol. HTTP (hyper) serves `/ws`
//! (upgraded to a WebSocket session), the REST API, the probes and the web page; QUIC serves
//! sessions on one bidirectional stream each.

pub(crate) mod deadline;
pub(crate) mod http;
pub(crate) mod media;
pub(crate) mod page;
pub(crate) mod quic;
pub(crate) mod response;
pub(crate) mod rest;
pub(crate) mod ws;
