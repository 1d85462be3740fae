// The engine's Playwright fixtures (crates/sync-xtask/harness/fixtures.mjs).
export * from '../../crates/sync-xtask/harness/fixtures.mjs';
