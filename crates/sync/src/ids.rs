//! Ids are prefixed ULIDs: `client_01HYS7J9GZ8P6VA3K3Z4X5M2K1`. The prefix says what
//! the id names (engine ids use the constants below; record ids the collection's name); the ULID sorts by creation time. Time and randomness come from the
//! caller, so this module stays free of I/O (the browser has no `SystemTime`).

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

/// Checks that `id` is `{prefix}_{ULID}` and returns the ULID.
pub fn parse_id(prefix: &str, id: &str) -> Result<Ulid, IdError> {
    let rest = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(|| IdError::WrongPrefix { id: id.into(), prefix: prefix.into() })?;
    Ulid::from_string(rest).map_err(|_| IdError::BadUlid { id: id.into() })
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
    fn ids_reject_wrong_prefix_and_garbage() {
        let id = new_id(CLIENT, 1, 2);
        assert!(matches!(parse_id(SESSION, &id), Err(IdError::WrongPrefix { .. })));
        assert!(matches!(parse_id(CLIENT, "client_not-a-ulid"), Err(IdError::BadUlid { .. })));
        assert!(matches!(parse_id(CLIENT, "client"), Err(IdError::WrongPrefix { .. })));
        assert!(parse_id(CLIENT, "client_01HYS7J9GZ8P6VA3K3Z4X5M2K1").is_ok());
    }
}
