// The SQLite Web Worker (a module worker). Loads the worker's own wasm bundle (the
// page's carries no SQLite) and starts the local store in it; db_worker_start
// announces itself to the page when ready.
import init, { db_worker_start } from './frontend-db.js';

await init({ module_or_path: new URL('./frontend-db_bg.wasm', import.meta.url) });
db_worker_start();
