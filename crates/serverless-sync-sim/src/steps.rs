//! What can happen in a run, as data: a run is a list of [`Step`]s drawn from a seed
//! ([`generate`]), then carried out without further randomness, so a failing list can
//! be shrunk by leaving steps out and replayed exactly.

use crate::rng::Rng;

/// The simulated browsers: 0 and 1 are one user's two devices, 2 another user, 3 the
/// attacker.
pub const CLIENTS: usize = 4;
pub const ATTACKER: usize = 3;
pub const USERS: [&str; CLIENTS] = ["ada", "ada", "bo", "mallory"];
pub const BOARDS: [&str; 3] = ["b1", "b2", "b3"];
/// Record ids are drawn from a small pool, so writes collide.
pub const RECORDS: usize = 6;

/// What happens to a request and its answer on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    /// Lost on the way there: the server never sees it.
    RequestLost,
    /// The server handles it; its answer is lost.
    AnswerLost,
    /// The server handles it twice (a retry racing the original).
    Duplicated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Add,
    Edit,
    Delete,
    Move,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next upstream write fails before doing anything (connection lost, D1
    /// overloaded, a lock).
    TransientWrite,
    /// The next upstream read fails.
    TransientRead,
    /// The next upstream write commits, then its answer is lost.
    LostAnswer,
    /// The app's callbacks are down until the next [`Step::CallbackBack`].
    CallbackDown,
    /// The app's callbacks answer 401 (the user's token expired) until the next
    /// [`Step::CallbackBack`], which stands for the renewed token.
    CallbackNeedsAuth,
    /// The isolate serving the next request dies at its end: what it wrote upstream
    /// stays, its answer and what it would do after answering (pokes, the pull's
    /// acknowledgement) are lost, and so is its memo.
    IsolateRestart,
    /// The next fan-out reaches no session object (overloaded, a network error): no
    /// session answers, and none of them is proof of a dead session.
    SessionsUnreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Acts as another client, without its key.
    ImpersonateClient { victim: usize },
    /// Uses another client's session with its own id and key.
    HijackSession { victim: usize },
    /// Pushes another client's pending or answered writes under its own id.
    ReplayWrites { victim: usize },
    /// Reads a board its user may not read.
    ReadRefused { board: usize },
    /// Pulls from a cursor the log has not reached.
    FutureCursor,
    /// Pushes a value larger than the connector reads.
    Oversized,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A local write (made only if the client's store accepts it).
    Write {
        client: usize,
        kind: WriteKind,
        record: usize,
        board: usize,
        to: usize,
        body: String,
    },
    /// The client pushes its outbox's first batch.
    Push {
        client: usize,
        fate: Fate,
    },
    /// The client opens a board's query (its snapshot is fetched).
    Open {
        client: usize,
        board: usize,
        fate: Fate,
    },
    /// The client's page closes a board: its query is no longer read (its time to
    /// live ran out) and the session is told on the socket.
    Close {
        client: usize,
        board: usize,
        fate: Fate,
    },
    /// The client pulls.
    Pull {
        client: usize,
        fate: Fate,
    },
    /// The client handles one waiting message (answers and pokes, in any order).
    Deliver {
        client: usize,
        pick: usize,
    },
    /// The browser is closed and opened again: same store (outbox and all), a new
    /// session; what was in flight is gone. (Also: another tab takes over as leader.)
    Reopen {
        client: usize,
    },
    /// The app starts or stops allowing a user a board.
    Grant {
        user: usize,
        board: usize,
    },
    Revoke {
        user: usize,
        board: usize,
    },
    /// Someone writes the upstream tables directly (an admin's SQL).
    DirectWrite {
        record: usize,
        board: usize,
        delete: bool,
        body: String,
    },
    /// The change log is compacted through its head.
    Compact,
    /// The app deploys its next model (`upgraded_model`): the upstream is migrated at
    /// once; each browser runs the old one until it is reopened (once per run).
    Upgrade,
    Fault(Fault),
    CallbackBack,
    /// Time passes.
    Tick {
        ms: i64,
    },
    Attack(Attack),
}

/// The steps of one run.
pub fn generate(seed: u64, count: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| step(&mut rng)).collect()
}

fn fate(rng: &mut Rng) -> Fate {
    match rng.below(20) {
        0 => Fate::RequestLost,
        1 => Fate::AnswerLost,
        2 => Fate::Duplicated,
        _ => Fate::Delivered,
    }
}

fn body(rng: &mut Rng) -> String {
    // "forbidden" is refused by the app's own rule in the upstream.
    let words = ["hi", "plans", "secret", "lunch?", "ok", "draft", "final", "forbidden"];
    format!("{} {}", words[rng.index(words.len())], rng.below(1000))
}

fn step(rng: &mut Rng) -> Step {
    let client = rng.index(CLIENTS);
    match rng.below(100) {
        0..=21 => {
            let kind = match rng.below(10) {
                0..=3 => WriteKind::Add,
                4..=6 => WriteKind::Edit,
                7..=8 => WriteKind::Delete,
                _ => WriteKind::Move,
            };
            Step::Write {
                client,
                kind,
                record: rng.index(RECORDS),
                board: rng.index(BOARDS.len()),
                to: rng.index(BOARDS.len()),
                body: body(rng),
            }
        }
        22..=35 => Step::Push { client, fate: fate(rng) },
        36..=39 => Step::Open { client, board: rng.index(BOARDS.len()), fate: fate(rng) },
        40..=41 => Step::Close { client, board: rng.index(BOARDS.len()), fate: fate(rng) },
        42..=51 => Step::Pull { client, fate: fate(rng) },
        52..=71 => Step::Deliver { client, pick: rng.index(8) },
        72..=73 => Step::Reopen { client },
        74..=76 => Step::Grant { user: rng.index(CLIENTS), board: rng.index(BOARDS.len()) },
        77..=78 => Step::Revoke { user: rng.index(CLIENTS), board: rng.index(BOARDS.len()) },
        79..=80 => Step::DirectWrite {
            record: rng.index(RECORDS),
            board: rng.index(BOARDS.len()),
            delete: rng.chance(30),
            body: body(rng),
        },
        81 if rng.chance(25) => Step::Upgrade,
        81 => Step::Compact,
        82..=86 => Step::Fault(match rng.below(7) {
            0 => Fault::TransientWrite,
            1 => Fault::TransientRead,
            2 => Fault::LostAnswer,
            3 => Fault::CallbackDown,
            4 => Fault::CallbackNeedsAuth,
            5 => Fault::IsolateRestart,
            _ => Fault::SessionsUnreachable,
        }),
        87..=88 => Step::CallbackBack,
        89..=93 => Step::Tick { ms: 1_000 * (1 + rng.below(40) as i64) },
        _ => {
            let victim = rng.index(ATTACKER);
            Step::Attack(match rng.below(11) {
                0..=1 => Attack::ImpersonateClient { victim },
                2..=3 => Attack::HijackSession { victim },
                4..=5 => Attack::ReplayWrites { victim },
                6..=7 => Attack::ReadRefused { board: rng.index(BOARDS.len()) },
                8..=9 => Attack::FutureCursor,
                _ => Attack::Oversized,
            })
        }
    }
}
