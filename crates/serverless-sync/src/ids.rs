//! Ids are prefixed ULIDs: `client_01HYS7J9GZ8P6VA3K3Z4X5M2K1`. The prefix says what
//! the id names (engine ids use the constants below; record ids the collection's
//! name); the ULID sorts by creation time. Time and randomness come from the caller,
//! so this module stays free of I/O (the browser has no `SystemTime`).
//!
//! Client ids are the exception: a client id is *derived* from the client's secret
//! key ([`client_id_for_key`]). The id is public (every change a client wrote carries
//! it); the key stays in the browser and is sent only with the client's own requests,
//! where it proves the id: nobody else can push, pull, replay or listen as that
//! client.

use sha2::{Digest, Sha256};
use ulid::Ulid;

pub const CLIENT: &str = "client";
pub const SESSION: &str = "session";
pub const OUTBOX: &str = "outbox";

/// `{prefix}_{ULID}` from a millisecond timestamp and 80 random bits.
pub fn new_id(prefix: &str, timestamp_ms: u64, random: u128) -> String {
    format!("{prefix}_{}", Ulid::from_parts(timestamp_ms, random))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id `{id}` must start with `{prefix}_`")]
    WrongPrefix { id: String, prefix: String },
    #[error("id `{id}` does not end in a valid ULID")]
    BadUlid { id: String },
}

/// Ids quoted in errors are cut: an error must not echo unbounded input.
const QUOTED_ID_CHARS: usize = 48;

fn quoted(id: &str) -> String {
    match id.char_indices().nth(QUOTED_ID_CHARS) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_string(),
    }
}

/// Checks that `id` is `{prefix}_{ULID}` and returns the ULID.
pub fn parse_id(prefix: &str, id: &str) -> Result<Ulid, IdError> {
    let rest = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(|| IdError::WrongPrefix { id: quoted(id), prefix: prefix.into() })?;
    Ulid::from_string(rest).map_err(|_| IdError::BadUlid { id: quoted(id) })
}

/// The client id a client key proves: `client_` + the first 128 bits of
/// SHA-256(key), written as a ULID.
pub fn client_id_for_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    format!("{CLIENT}_{}", Ulid::from(u128::from_be_bytes(first)))
}

/// A client key is 32 to 128 visible ASCII characters (the browser makes 64 hex
/// digits from 32 random bytes).
pub fn is_valid_client_key(key: &str) -> bool {
    (32..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let early = new_id(OUTBOX, 1_700_000_000_000, 42);
        let late = new_id(OUTBOX, 1_700_000_000_001, 1);
        assert!(early.starts_with("outbox_"));
        assert_eq!(early.len(), "outbox_".len() + 26);
        assert!(early < late);
        assert_eq!(parse_id(OUTBOX, &early).map(|u| u.timestamp_ms()), Ok(1_700_000_000_000));
    }

    #[test]
    fn a_client_id_is_proven_by_its_key_only() {
        let key = "8f14e45fceea167a5a36dedd4bea2543a6f9ac1b9b0b2d7e6c43b2e5f5b1c9d0";
        let id = client_id_for_key(key);
        assert!(parse_id(CLIENT, &id).is_ok(), "{id}");
        assert_eq!(client_id_for_key(key), id, "stable");
        assert_ne!(client_id_for_key(&key.replace('8', "9")), id);
        assert!(is_valid_client_key(key));
        assert!(!is_valid_client_key("short"));
        assert!(!is_valid_client_key(&format!("{key} with spaces")));
    }

    #[test]
    fn errors_quote_at_most_a_short_prefix_of_the_id() {
        let long = "x".repeat(6000);
        let error = parse_id(CLIENT, &long).expect_err("not an id").to_string();
        assert!(error.len() < 120, "{error}");
    }

    #[test]
    fn ids_reject_wrong_prefix_and_garbage() {
        let id = new_id(CLIENT, 1, 2);
        assert!(matches!(parse_id(SESSION, &id), Err(IdError::WrongPrefix { .. })));
        assert!(matches!(parse_id(CLIENT, "client_not-a-ulid"), Err(IdError::BadUlid { .. })));
        assert!(matches!(parse_id(CLIENT, "client"), Err(IdError::WrongPrefix { .. })));
        assert!(parse_id(CLIENT, "client_01HYS7J9GZ8P6VA3K3Z4X5M2K1").is_ok());
    }
}
