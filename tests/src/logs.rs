//! Captures every log line the test binary writes (at INFO, the level deployed functions
//! run at), so tests can prove that no secret or personal data reaches the logs.

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
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of the test binary");
        buffer
    })
}

/// Starts capturing (idempotent). Call before the code under test runs.
pub fn capture() {
    buffer();
}

/// Everything logged so far.
pub fn captured() -> String {
    String::from_utf8_lossy(&buffer().0.lock().expect("log buffer")).into_owned()
}
