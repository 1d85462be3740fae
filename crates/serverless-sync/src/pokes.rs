//! When a session tells its client that the change log moved (a poke), decided
//! without I/O; the ClientSession object stores a [`PokeGate`] and carries out what it
//! answers.
//!
//! Rules:
//! - a client is poked at most once per cursor, and never for a cursor it has already
//!   pulled through (`acknowledged`);
//! - while a poke is outstanding (sent, and the client has not yet pulled through
//!   it), newer cursors are held back and merged into one: a burst of 1000 writes
//!   costs the client one poke per pull it can make, not 1000;
//! - what is held goes out as soon as the client pulls through the outstanding poke,
//!   or when a short alarm fires (a client that never pulls still hears of changes);
//! - a poke that carries its changes is never held: the client shows them as they
//!   come, so only a cursor it already pulled through is skipped.

use serde::{Deserialize, Serialize};

/// How long a held poke may wait for the client's pull before it goes out anyway.
pub const HOLD_MS: u64 = 500;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PokeGate {
    /// The highest cursor the client has pulled through.
    pub acknowledged: u64,
    /// The highest cursor sent in a poke.
    pub poked: u64,
    /// The highest cursor held back while a poke is outstanding (0: none).
    pub held: u64,
}

/// What to do with a change the session was told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PokeDecision {
    /// The client holds it or has been told: nothing to send.
    Skip,
    /// Send a poke for this cursor now.
    Send(u64),
    /// Held back behind the outstanding poke; `set_alarm` when this is the first cursor
    /// held (the alarm releases it after [`HOLD_MS`] if no pull does first).
    Hold { set_alarm: bool },
}

impl PokeGate {
    /// A poke is outstanding: sent, and not yet pulled through.
    pub fn outstanding(&self) -> bool {
        self.poked > self.acknowledged
    }

    /// The log reached `cursor` on a topic the session watches.
    pub fn on_change(&mut self, cursor: u64) -> PokeDecision {
        if cursor <= self.acknowledged.max(self.poked).max(self.held) {
            return PokeDecision::Skip;
        }
        if self.outstanding() {
            let set_alarm = self.held == 0;
            self.held = cursor;
            return PokeDecision::Hold { set_alarm };
        }
        self.poked = cursor;
        PokeDecision::Send(cursor)
    }

    /// The log reached `cursor` and the poke carries the changes: sent now, even while
    /// another poke is outstanding or after a later cursor (writers commit in one
    /// order and poke in another), unless the client already pulled through it. It
    /// neither waits for nor counts as an outstanding poke: a client that can apply
    /// the changes does not pull, so nothing held may depend on its pull.
    pub fn on_carried(&mut self, cursor: u64) -> PokeDecision {
        if cursor <= self.acknowledged {
            return PokeDecision::Skip;
        }
        PokeDecision::Send(cursor)
    }

    /// The client pulled through `cursor`. Returns the cursor to poke now, if a held
    /// one is still ahead of the client.
    pub fn on_acknowledged(&mut self, cursor: u64) -> Option<u64> {
        self.acknowledged = self.acknowledged.max(cursor);
        if self.outstanding() {
            // Still catching up on the last poke: its pull's answer covers more.
            return None;
        }
        self.release()
    }

    /// The hold alarm fired: whatever is held goes out.
    pub fn on_alarm(&mut self) -> Option<u64> {
        self.release()
    }

    fn release(&mut self) -> Option<u64> {
        let held = std::mem::take(&mut self.held);
        (held > self.acknowledged).then(|| {
            self.poked = self.poked.max(held);
            held
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_while_a_poke_is_outstanding_becomes_one_poke() {
        let mut gate = PokeGate::default();
        assert_eq!(gate.on_change(1), PokeDecision::Send(1));
        assert_eq!(gate.on_change(2), PokeDecision::Hold { set_alarm: true });
        for cursor in 3..=1000 {
            assert_eq!(gate.on_change(cursor), PokeDecision::Hold { set_alarm: false });
        }
        // The client's pull answered through 1 only: the held 1000 goes out at once.
        assert_eq!(gate.on_acknowledged(1), Some(1000));
        assert_eq!(gate.on_change(1000), PokeDecision::Skip);
        // Its next pull read through 1000: nothing left.
        assert_eq!(gate.on_acknowledged(1000), None);
        assert_eq!(gate.on_alarm(), None);
    }

    #[test]
    fn pokes_carrying_changes_go_out_at_once_in_any_order() {
        let mut gate = PokeGate::default();
        assert_eq!(gate.on_carried(3), PokeDecision::Send(3));
        // Outstanding, and a later writer's poke arrived first: both still go.
        assert_eq!(gate.on_carried(5), PokeDecision::Send(5));
        assert_eq!(gate.on_carried(4), PokeDecision::Send(4));
        // A row-less poke is not held behind them (the client may never pull for
        // them), and a carried poke past a held one does not drop it.
        assert_eq!(gate.on_change(6), PokeDecision::Send(6));
        assert_eq!(gate.on_change(8), PokeDecision::Hold { set_alarm: true });
        assert_eq!(gate.on_carried(9), PokeDecision::Send(9));
        assert_eq!(gate.on_alarm(), Some(8));
        // What the client pulled through is never sent again.
        assert_eq!(gate.on_acknowledged(9), None);
        assert_eq!(gate.on_carried(9), PokeDecision::Skip);
        assert_eq!(gate.on_carried(2), PokeDecision::Skip);
    }

    #[test]
    fn nothing_is_poked_twice_or_behind_the_client() {
        let mut gate = PokeGate::default();
        assert_eq!(gate.on_acknowledged(5), None);
        assert_eq!(gate.on_change(4), PokeDecision::Skip);
        assert_eq!(gate.on_change(5), PokeDecision::Skip);
        assert_eq!(gate.on_change(6), PokeDecision::Send(6));
        assert_eq!(gate.on_change(6), PokeDecision::Skip);
        // A pull that already read through 9 makes a held 8 moot.
        assert_eq!(gate.on_change(8), PokeDecision::Hold { set_alarm: true });
        assert_eq!(gate.on_acknowledged(9), None);
        assert_eq!(gate.on_alarm(), None);
        assert_eq!(gate.on_change(10), PokeDecision::Send(10));
    }

    #[test]
    fn a_client_that_never_pulls_still_hears_on_the_alarm() {
        let mut gate = PokeGate::default();
        assert_eq!(gate.on_change(1), PokeDecision::Send(1));
        assert_eq!(gate.on_change(2), PokeDecision::Hold { set_alarm: true });
        assert_eq!(gate.on_change(3), PokeDecision::Hold { set_alarm: false });
        assert_eq!(gate.on_alarm(), Some(3));
        assert_eq!(gate.on_change(4), PokeDecision::Hold { set_alarm: true });
        // A pull that started before the poke (an older cursor) releases nothing.
        assert_eq!(gate.on_acknowledged(2), None);
        assert_eq!(gate.on_alarm(), Some(4));
    }

    #[test]
    fn every_change_reaches_a_client_that_pulls_on_each_poke() {
        // Model: changes arrive; each poke makes the client pull through the head at
        // that moment, acknowledged a little later. At the end the client holds all.
        let mut gate = PokeGate::default();
        let mut head = 0;
        let mut in_flight: Option<u64> = None;
        let mut client = 0;
        let mut pokes = 0;
        for step in 0..500u64 {
            if step % 6 != 5 {
                head += 1;
                match gate.on_change(head) {
                    PokeDecision::Send(_) => {
                        pokes += 1;
                        in_flight.get_or_insert(head);
                    }
                    PokeDecision::Hold { .. } | PokeDecision::Skip => {}
                }
            } else if in_flight.take().is_some() {
                client = head;
                if gate.on_acknowledged(head).is_some() {
                    pokes += 1;
                    in_flight = Some(head);
                }
            }
        }
        if gate.on_alarm().is_some() {
            client = head;
        }
        if in_flight.is_some() {
            client = head;
        }
        assert_eq!(client, head);
        // Five changes land per pull: about one poke per pull, not one per change.
        assert!(pokes <= head / 4, "{pokes} pokes for {head} changes");
    }
}
