//! The shortest history that still fails: delta debugging over the steps (Zeller's ddmin),
//! keeping a candidate when it breaks the same kind of promise.

use crate::run::{Stores, Violation};
use crate::step::Step;

/// What kind of promise a violation broke: its text without the numbers and identifiers
/// that change as steps are removed.
pub fn kind(violation: &Violation) -> String {
    let words: Vec<&str> = violation.what.split_whitespace().take(4).collect();
    let text: String = words.join(" ").chars().filter(|c| !c.is_ascii_digit()).collect();
    format!("{}:{text}", violation.store)
}

/// How many replays the shrinker may spend: a history on DynamoDB in the emulator replays
/// in tens of seconds, one on the embedded store in milliseconds.
pub fn budget(stores: Stores) -> usize {
    match stores {
        Stores::Embedded => 400,
        Stores::Both => 40,
    }
}

/// Removes steps while the history still breaks a promise of the same kind. `budget`
/// bounds the number of replays.
pub fn shrink(seed: u64, history: Vec<Step>, stores: Stores, past_wording: bool, wanted: &str, budget: usize) -> (Vec<Step>, Violation) {
    let fails = |candidate: &[Step]| {
        let outcome = crate::replay(seed, candidate, stores, past_wording);
        outcome.violation.filter(|v| kind(v) == wanted).map(|v| (outcome.history, v))
    };
    let (mut current, mut violation) = fails(&history).expect("the history fails as it is");
    let mut chunks = 2;
    let mut runs = 1;
    while current.len() >= 2 && runs < budget {
        let size = current.len().div_ceil(chunks);
        let mut reduced = false;
        for start in (0..current.len()).step_by(size) {
            let candidate: Vec<Step> =
                current[..start].iter().chain(current[(start + size).min(current.len())..].iter()).cloned().collect();
            runs += 1;
            if let Some((history, found)) = fails(&candidate) {
                current = history;
                violation = found;
                chunks = (chunks - 1).max(2);
                reduced = true;
                break;
            }
            if runs >= budget {
                break;
            }
        }
        if !reduced {
            if size == 1 {
                break;
            }
            chunks = (chunks * 2).min(current.len());
        }
    }
    (current, violation)
}
