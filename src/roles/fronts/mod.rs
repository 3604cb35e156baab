//! Fronts: how a client tells proxy1 (or the direct SOCKS5 server) where it wants to go.
//! The plain TCP port has one fixed destination; the SOCKS5 front lets the client name it.

pub mod socks5;
