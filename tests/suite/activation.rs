//! Activation by email link and SMS code.
