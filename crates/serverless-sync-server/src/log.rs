//! The worker's log (Workers Logs, `wrangler tail`); standard error natively.

/// Logs `message` as an error.
pub fn error(message: &str) {
    #[cfg(target_arch = "wasm32")]
    worker::console_error!("{message}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}
