//! The sync engine core. Shared by the browser store, the connector worker and the
//! Durable Objects. Does no I/O: every function here is a pure transformation.

/// Version of the client <-> connector protocol. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
