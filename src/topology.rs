//! Who is where on the lab's link: the four [`Role`]s, the two [`Endpoint`]s of the UDP link
//! and the [`LinkDirection`] a frame travels in.
//!
//! A leaf: it imports nothing of the crate, so the event stream, the link emulator and
//! everything above can share these types without importing each other.

/// Which side of the UDP link an event happened at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Proxy1,
    Proxy2,
}

impl Endpoint {
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Proxy1 => "proxy1",
            Endpoint::Proxy2 => "proxy2",
        }
    }
    /// The role that runs this endpoint.
    pub fn role(self) -> Role {
        match self {
            Endpoint::Proxy1 => Role::Proxy1,
            Endpoint::Proxy2 => Role::Proxy2,
        }
    }
}

/// The direction a frame travels on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkDirection {
    /// proxy1 → proxy2 (client to server side).
    ToProxy2,
    /// proxy2 → proxy1 (server to client side).
    ToProxy1,
}

impl LinkDirection {
    /// The direction of frames that `endpoint` sends.
    pub fn sent_by(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Proxy1 => LinkDirection::ToProxy2,
            Endpoint::Proxy2 => LinkDirection::ToProxy1,
        }
    }
    /// The other direction.
    pub fn reverse(self) -> Self {
        match self {
            LinkDirection::ToProxy2 => LinkDirection::ToProxy1,
            LinkDirection::ToProxy1 => LinkDirection::ToProxy2,
        }
    }
    pub fn arrow(self) -> &'static str {
        match self {
            LinkDirection::ToProxy2 => "p1→p2",
            LinkDirection::ToProxy1 => "p2→p1",
        }
    }
}

/// The four roles of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    EchoServer,
    Proxy2,
    Proxy1,
    Client,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::EchoServer => "server",
            Role::Proxy2 => "proxy2",
            Role::Proxy1 => "proxy1",
            Role::Client => "client",
        }
    }
}
