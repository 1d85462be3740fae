//! A deterministic simulation of the whole sync loop (`cargo xtask sim`).
//!
//! One seed draws a list of [`steps::Step`]s; a [`world::World`] carries them out:
//! simulated browsers (the real `sync-store` on in-memory SQLite, driven by the real
//! `sync_store::driver::SyncDriver`), the connector's real pipelines
//! (`sync_server::native`) on an SQLite upstream with planned faults, the sessions'
//! real decisions (`sync::session`), the app's rules in process with access granted
//! and revoked over time, a network that loses, duplicates and reorders, and one
//! attacker. After every step and at rest the run checks the invariants listed in
//! ARCHITECTURE.md; a failing run is shrunk to the shortest list of steps that still
//! fails, and replays from its seed.

#[path = "../../serverless-sync/tests/common/mod.rs"]
mod common;
mod rng;
pub mod steps;
pub mod world;

use std::panic::{AssertUnwindSafe, catch_unwind};

use steps::Step;
use world::{Counts, Violation, World};

/// The simulation's sync model: cards on boards (the engine's neutral test model).
pub fn model() -> sync::SyncModel {
    common::model()
}

/// The model the app deploys next (cards gain `priority`, `moveCard` is gone).
pub fn upgraded_model() -> sync::SyncModel {
    common::upgraded_model()
}

/// How a run failed: after which step (`None`: at rest), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub at_step: Option<usize>,
    pub violation: Violation,
}

/// Carries out `steps` in a world seeded with `seed`, then settles it.
pub fn run(seed: u64, steps: &[Step]) -> Result<Counts, Failed> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new(seed);
        for (index, step) in steps.iter().enumerate() {
            world.step(step).map_err(|violation| Failed { at_step: Some(index), violation })?;
        }
        world.settle().map_err(|violation| Failed { at_step: None, violation })?;
        Ok(world.counts)
    }));
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Failed { at_step: None, violation: Violation(format!("panicked: {message}")) })
    })
}

/// The shortest list of steps (found by leaving out chunks, then single steps) that
/// still fails.
pub fn shrink(seed: u64, steps: &[Step]) -> Vec<Step> {
    let mut current: Vec<Step> = steps.to_vec();
    // Everything after the failing step is irrelevant.
    if let Err(Failed { at_step: Some(at), .. }) = run(seed, &current) {
        current.truncate(at + 1);
    }
    let mut chunk = current.len() / 2;
    while chunk >= 1 {
        let mut start = 0;
        while start < current.len() {
            let mut candidate = current.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            if run(seed, &candidate).is_err() {
                current = candidate;
            } else {
                start += chunk;
            }
        }
        chunk /= 2;
    }
    current
}
