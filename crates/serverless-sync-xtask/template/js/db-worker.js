// The SQLite Web Worker (a module worker): loads the worker's own bundle (the page's
// carries no SQLite) and starts the engine's worker runtime in it.
import init, { db_worker_start } from './{{app}}-db.js';

await init({ module_or_path: new URL('./{{app}}-db_bg.wasm', import.meta.url) });
db_worker_start();
