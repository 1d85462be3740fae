// The engine's test harness (crates/serverless-sync-xtask/harness/app.mjs), as every app gets it.
export * from '../../crates/serverless-sync-xtask/harness/app.mjs';
