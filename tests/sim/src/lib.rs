//! A deterministic simulation of years of use of the product, on the embedded store and on
//! DynamoDB in the emulator, held to a reference model after every step (after
//! FoundationDB's simulation, TigerBeetle's VOPR and Jepsen's bank test).
//!
//! One seed decides everything: the organizations and persons, every request (by whom,
//! keyed or not, alone or at once with others, meeting which store fault), every clock
//! move, every sweep and delivery, and the order in which concurrent requests' store calls
//! interleave. The product's randomness comes from a seeded `Entropy`, its time from a
//! manual clock, Tokio's time is virtual on the embedded store: one seed replays a history
//! byte for byte. A failing history is shrunk to the shortest that still fails and printed
//! as JSON lines, which `--replay` runs again.
//!
//! - `step`: what a history is made of;
//! - `generate`: histories from a seed;
//! - `model`: the reference model, written apart from the domain crate;
//! - `world`: the product's functions over one store, with the simulator's ports;
//! - `store`: the decorator that interleaves concurrent requests and injects store faults;
//! - `run`: a history run and checked, step by step;
//! - `shrink`: the shortest failing history.

pub mod generate;
pub mod http;
pub mod logs;
pub mod model;
pub mod run;
pub mod shrink;
pub mod step;
pub mod store;
pub mod world;

use generate::{Generator, Trouble};
use run::{Figures, Runner, Stores, Violation};
use step::Step;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub seed: u64,
    /// Steps after the opening (people, organizations, money).
    pub steps: usize,
    pub stores: Stores,
    pub trouble: Trouble,
    /// Carry on past a message whose words differ from the model's (reported in
    /// `Outcome::wording`), to see what else a history finds.
    pub past_wording: bool,
}

/// A history, what it did, and the promise it broke, if any.
pub struct Outcome {
    pub history: Vec<Step>,
    pub figures: Figures,
    pub violation: Option<Violation>,
    pub wording: Vec<Violation>,
}

/// Generates a history from the seed and runs it, stopping at the first broken promise.
pub fn simulate(options: Options) -> Outcome {
    let mut runner = Runner::new(options.seed, options.stores);
    runner.past_wording = options.past_wording;
    let mut generator = Generator::new(options.seed, options.trouble);
    let mut history = Vec::new();
    let opening = generator.opening();
    for step in opening {
        history.push(step.clone());
        if let Err(violation) = runner.step(&step) {
            return Outcome { history, figures: runner.figures, violation: Some(violation), wording: runner.wording };
        }
    }
    for _ in 0..options.steps {
        let step = generator.next(&runner.model, &runner.known, runner.now());
        history.push(step.clone());
        if let Err(violation) = runner.step(&step) {
            return Outcome { history, figures: runner.figures, violation: Some(violation), wording: runner.wording };
        }
    }
    Outcome { history, figures: runner.figures, violation: None, wording: runner.wording }
}

/// Runs a given history (one that was printed, or shrunk), with entropy from `seed`.
pub fn replay(seed: u64, history: &[Step], stores: Stores, past_wording: bool) -> Outcome {
    let mut runner = Runner::new(seed, stores);
    runner.past_wording = past_wording;
    for (n, step) in history.iter().enumerate() {
        if let Err(violation) = runner.step(step) {
            return Outcome {
                history: history[..=n].to_vec(),
                figures: runner.figures,
                violation: Some(violation),
                wording: runner.wording,
            };
        }
    }
    Outcome { history: history.to_vec(), figures: runner.figures, violation: None, wording: runner.wording }
}
