//! Every log line the functions write during a simulation (JSON, at INFO, as deployed),
//! taken after each step and searched for personal data and secrets. Each history runs on
//! its own thread (`--jobs`), and so does everything it logs: the lines are kept per thread,
//! so a history reads its own.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

thread_local! {
    static LINES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes into the calling thread's buffer.
struct ThisThread;

impl Write for ThisThread {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LINES.with(|lines| lines.borrow_mut().extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (idempotent).
pub fn capture() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let _ = tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_writer(|| ThisThread).try_init();
    });
}

/// What this thread logged since the last call.
pub fn take() -> String {
    LINES.with(|lines| String::from_utf8_lossy(&std::mem::take(&mut *lines.borrow_mut())).into_owned())
}

/// Whether `secret` stands in `text` as a whole token (not inside a longer number, nor as
/// the fraction of a timestamp).
pub fn contains_token(text: &str, secret: &str) -> bool {
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        let joined = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
        !joined(before) && !joined(after)
    })
}
