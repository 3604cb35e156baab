//! The tunnel connection lifecycle that both proxies share, as far as it is pure logic:
//! which id a client gets and which waiting client is served next ([`ids`]), and which
//! connections proxy2 admits ([`admission`]), and the acks that finished connections still
//! owe a repeated close ([`finished`]). No sockets here; the proxies in
//! [`crate::roles`] do the I/O and ask these what to do.

pub mod activity;
pub mod admission;
pub mod finished;
pub mod ids;
pub mod reliable;
