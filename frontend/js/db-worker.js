// The SQLite Web Worker (a module worker). Loads the app's wasm bundle and starts the
// local store in it; db_worker_start announces itself to the page when ready.
import init, { db_worker_start } from './frontend.js';

await init({ module_or_path: new URL('./frontend_bg.wasm', import.meta.url) });
db_worker_start();
