//! Money in halalas (1 SAR = 100 halalas). Unsigned, so a negative balance cannot exist;
//! every subtraction is checked.

use std::fmt;
use std::iter::Sum;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Halalas(u64);

impl Halalas {
    pub const ZERO: Halalas = Halalas(0);

    pub const fn new(halalas: u64) -> Self {
        Halalas(halalas)
    }

    pub const fn from_riyals(riyals: u64) -> Self {
        Halalas(riyals * 100)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Halalas) -> Option<Halalas> {
        self.0.checked_add(other.0).map(Halalas)
    }

    /// `None` when `other` is larger: the caller decides what "not enough" means.
    pub fn checked_sub(self, other: Halalas) -> Option<Halalas> {
        self.0.checked_sub(other.0).map(Halalas)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Halalas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02} SAR", self.0 / 100, self.0 % 100)
    }
}

impl Sum for Halalas {
    /// Saturates instead of wrapping; real sums are nowhere near `u64::MAX`.
    fn sum<I: Iterator<Item = Halalas>>(iter: I) -> Self {
        Halalas(iter.fold(0u64, |total, next| total.saturating_add(next.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_riyals_with_two_decimals() {
        assert_eq!(Halalas::new(15000).to_string(), "150.00 SAR");
        assert_eq!(Halalas::new(5).to_string(), "0.05 SAR");
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        assert_eq!(Halalas::new(100).checked_sub(Halalas::new(101)), None);
        assert_eq!(Halalas::new(100).checked_sub(Halalas::new(100)), Some(Halalas::ZERO));
    }
}
