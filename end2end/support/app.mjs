// The engine's test harness (crates/sync-xtask/harness/app.mjs), as every app gets it.
export * from '../../crates/sync-xtask/harness/app.mjs';
