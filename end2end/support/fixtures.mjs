// The engine's Playwright fixtures (crates/serverless-sync-xtask/harness/fixtures.mjs).
export * from '../../crates/serverless-sync-xtask/harness/fixtures.mjs';
