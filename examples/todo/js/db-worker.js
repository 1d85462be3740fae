// The SQLite Web Worker (a module worker): loads the worker's own bundle (the page's
// carries no SQLite) and starts the engine's worker runtime in it (db_worker_start ->
// sync_client::start_db_worker).
import init, { db_worker_start } from './todo-db.js';

await init({ module_or_path: new URL('./todo-db_bg.wasm', import.meta.url) });
db_worker_start();
