//! Every log line the functions write during a simulation (JSON, at INFO, as deployed),
//! taken after each step and searched for personal data and secrets.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn buffer() -> &'static Buffer {
    static BUFFER: OnceLock<Buffer> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        // One subscriber for the process; a second `init` (another history in the same
        // process) finds it in place.
        let _ = tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_writer(move || writer.clone()).try_init();
        buffer
    })
}

/// Starts capturing (idempotent).
pub fn capture() {
    buffer();
}

/// What was logged since the last call.
pub fn take() -> String {
    let mut bytes = buffer().0.lock().expect("log buffer");
    String::from_utf8_lossy(&std::mem::take(&mut *bytes)).into_owned()
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
