// The engine's devtools helpers (kept with the harness in serverless-sync-xtask).
export * from '../../crates/serverless-sync-xtask/harness/devtools.mjs';
