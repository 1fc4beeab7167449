//! Randomness as a port, like the clock: every identifier, nonce, commit token and backoff
//! pause a command needs comes from an `Entropy` source the caller passes in — the
//! operating system's in production, a seeded one in the simulator — so that one seed
//! replays a whole history byte for byte.
//!
//! A decision never reads the source itself: the pipeline draws 256 bits for each attempt
//! and hands the decision a `Fresh`, a deterministic generator over them (HMAC-SHA256 in
//! counter mode, a standard PRF construction: with a secret seed its output is as
//! unpredictable as the seed). `decide` is therefore a function of what was read, the time
//! and that seed.

use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::secrets::Nonce;

/// Where random bytes come from.
pub trait Entropy: Send + Sync {
    fn fill(&self, bytes: &mut [u8]);
}

/// The operating system's random source (production, the local server).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        getrandom::fill(bytes).expect("the operating system's random source failed");
    }
}

impl SystemEntropy {
    /// `bytes` random bytes as lower-case hex, for code outside any command (request ids at
    /// the edge, test fixtures).
    pub fn hex(bytes: usize) -> String {
        let mut buffer = vec![0u8; bytes];
        SystemEntropy.fill(&mut buffer);
        hex::encode(buffer)
    }
}

/// A source that replays the same bytes for the same seed (the simulator, tests).
pub struct SeededEntropy(Mutex<Generator>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_be_bytes());
        SeededEntropy(Mutex::new(Generator::new(key)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).fill(bytes);
    }
}

/// HMAC-SHA256(seed, counter) blocks, read in order.
#[derive(Clone)]
struct Generator {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl Generator {
    fn new(seed: [u8; 32]) -> Self {
        Generator { seed, counter: 0, block: [0; 32], used: 32 }
    }

    fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            if self.used == self.block.len() {
                let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.seed).expect("HMAC accepts keys of any length");
                mac.update(&self.counter.to_be_bytes());
                self.block = mac.finalize().into_bytes().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

/// Fresh values for one attempt of one command: identifiers, nonces, tokens. Drawn from
/// 256 bits the pipeline took from the `Entropy` port before deciding.
pub struct Fresh(Generator);

impl Fresh {
    /// Seeds a generator from `entropy`.
    pub fn draw(entropy: &dyn Entropy) -> Self {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed);
        Fresh(Generator::new(seed))
    }

    /// A generator for tests that need fresh values and no port.
    pub fn for_tests(seed: u64) -> Self {
        Fresh::draw(&SeededEntropy::new(seed))
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0u8; N];
        self.0.fill(&mut bytes);
        bytes
    }

    /// `bytes` bytes as lower-case hex.
    pub fn hex(&mut self, bytes: usize) -> String {
        let mut buffer = vec![0u8; bytes];
        self.0.fill(&mut buffer);
        hex::encode(buffer)
    }

    /// An identifier with a readable prefix, e.g. `seat_3f9c…` (80 bits).
    pub fn id(&mut self, prefix: &str) -> String {
        format!("{prefix}_{}", self.hex(10))
    }

    /// 128 bits for a link token or a code (see `secrets`).
    pub fn nonce(&mut self) -> Nonce {
        Nonce::from_bytes(self.bytes::<16>())
    }

    /// A fraction in [0, 1], for jittered backoff.
    pub fn fraction(&mut self) -> f64 {
        f64::from(u32::from_be_bytes(self.bytes::<4>())) / f64::from(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_draws_the_same_values_and_another_seed_others() {
        let draw = |seed| {
            let entropy = SeededEntropy::new(seed);
            let mut first = Fresh::draw(&entropy);
            let mut second = Fresh::draw(&entropy);
            (first.id("seat"), first.nonce(), second.hex(16))
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let (id, _, hex) = draw(7);
        assert!(id.starts_with("seat_") && id.len() == 25, "{id}");
        assert_eq!(hex.len(), 32);
    }

    #[test]
    fn the_generator_reads_blocks_in_order_whatever_the_sizes_asked() {
        let mut whole = Generator::new([3; 32]);
        let mut all = [0u8; 100];
        whole.fill(&mut all);
        let mut pieces = Generator::new([3; 32]);
        let mut joined = Vec::new();
        for size in [1, 31, 2, 40, 26] {
            let mut part = vec![0u8; size];
            pieces.fill(&mut part);
            joined.extend(part);
        }
        assert_eq!(joined, all.to_vec());
        assert_ne!(all[..32], all[32..64], "each block is a new HMAC output");
    }

    #[test]
    fn system_entropy_differs_between_draws() {
        assert_ne!(SystemEntropy::hex(16), SystemEntropy::hex(16));
    }

    /// `decide` draws no randomness: the operating system's source is read in this module
    /// and nowhere else in the domain crate.
    #[test]
    fn only_this_module_reads_the_operating_systems_random_source() {
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut readers = Vec::new();
        let mut folders = vec![source.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("readable");
                    if text.contains(concat!("getrandom", "::")) {
                        readers.push(path.strip_prefix(&source).expect("inside").display().to_string());
                    }
                }
            }
        }
        assert_eq!(readers, vec!["entropy.rs".to_owned()]);
    }
}
