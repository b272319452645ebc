use std::time::Duration;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket handshake: {0}")]
    Handshake(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("quic: {0}")]
    Quic(String),
    /// The server answered with an Error frame.
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    /// The server sent something the protocol does not allow here.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection closed")]
    Closed,
    #[error("{0}")]
    Unsupported(&'static str),
}
