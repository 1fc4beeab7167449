//! What a use case answers when it says no, and when it fails.
//!
//! A `Rejection` is the client's fault or a rule's refusal: it has a stable machine code,
//! a human message and optional details. Its HTTP status is decided in one place, in the
//! gateway crate, from `Kind::class`. An `Error::Internal` is ours: the client gets a bare
//! 5xx and the cause chain goes to the log.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::{BoxError, StoreError};

/// The broad class of a rejection; the gateway maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    BadRequest,
    Unauthenticated,
    PaymentRequired,
    Forbidden,
    NotFound,
    Conflict,
    Gone,
    PayloadTooLarge,
    Unprocessable,
    Locked,
    TooManyRequests,
    Busy,
}

macro_rules! kinds {
    ($($variant:ident => ($code:literal, $class:ident)),+ $(,)?) => {
        /// Every refusal the API can give, with its stable `code`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind { $($variant),+ }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            pub fn code(self) -> &'static str {
                match self { $(Kind::$variant => $code),+ }
            }

            pub fn class(self) -> Class {
                match self { $(Kind::$variant => Class::$class),+ }
            }
        }
    };
}

kinds! {
    InvalidRequest => ("invalid_request", BadRequest),
    MissingIdempotencyKey => ("missing_idempotency_key", BadRequest),
    Unauthenticated => ("unauthenticated", Unauthenticated),
    InsufficientBalance => ("insufficient_balance", PaymentRequired),
    Forbidden => ("forbidden", Forbidden),
    NotAnAdministrator => ("not_an_administrator", Forbidden),
    OutsideAdministeredEstablishments => ("outside_administered_establishments", Forbidden),
    CannotManageSelf => ("cannot_manage_self", Forbidden),
    CannotManageManager => ("cannot_manage_manager", Forbidden),
    ServiceNotHeld => ("service_not_held", Forbidden),
    OperatorOnly => ("operator_only", Forbidden),
    ManagerOnly => ("manager_only", Forbidden),
    SelfSubscriptionDisabled => ("self_subscription_disabled", Forbidden),
    NotAnEmployee => ("not_an_employee", Forbidden),
    NotFound => ("not_found", NotFound),
    UserNotFound => ("user_not_found", NotFound),
    VersionConflict => ("version_conflict", Conflict),
    IdempotencyKeyInFlight => ("idempotency_key_in_flight", Conflict),
    OrganizationExists => ("organization_exists", Conflict),
    AlreadySuspended => ("already_suspended", Conflict),
    AlreadyConfirmed => ("already_confirmed", Conflict),
    AlreadyActive => ("already_active", Conflict),
    MessageNotResendable => ("message_not_resendable", Conflict),
    PriceChanged => ("price_changed", Conflict),
    MessageGone => ("message_gone", Conflict),
    MessageOutdated => ("message_outdated", Conflict),
    ActivationLinkUsed => ("activation_link_used", Gone),
    ActivationLinkExpired => ("activation_link_expired", Gone),
    PayloadTooLarge => ("payload_too_large", PayloadTooLarge),
    InvalidIdNumber => ("invalid_id_number", Unprocessable),
    InvalidMobile => ("invalid_mobile", Unprocessable),
    InvalidEmail => ("invalid_email", Unprocessable),
    InvalidOrganizationId => ("invalid_organization_id", Unprocessable),
    InvalidEstablishmentId => ("invalid_establishment_id", Unprocessable),
    InvalidNationality => ("invalid_nationality", Unprocessable),
    NationalityMismatch => ("nationality_mismatch", Unprocessable),
    IqamaExpiryRequired => ("iqama_expiry_required", Unprocessable),
    InvalidAmount => ("invalid_amount", Unprocessable),
    InvalidField => ("invalid_field", Unprocessable),
    PersonNotRegistered => ("person_not_registered", Unprocessable),
    IqamaExpired => ("iqama_expired", Unprocessable),
    AlreadySubscribed => ("already_subscribed", Unprocessable),
    // A user the caller may not see holds a seat: told without saying so.
    PersonUnavailable => ("person_unavailable", Unprocessable),
    UnknownEstablishment => ("unknown_establishment", Unprocessable),
    EstablishmentNotAssigned => ("establishment_not_assigned", Unprocessable),
    UserTypeRequired => ("user_type_required", Unprocessable),
    UserTypeNotApplicable => ("user_type_not_applicable", Unprocessable),
    ManagerSeatRequired => ("manager_seat_required", Unprocessable),
    DuplicatePerson => ("duplicate_person", Unprocessable),
    TooManyPersons => ("too_many_persons", Unprocessable),
    IdempotencyKeyReused => ("idempotency_key_reused", Unprocessable),
    PaymentReferenceReused => ("payment_reference_reused", Unprocessable),
    UnknownService => ("unknown_service", Unprocessable),
    // Well formed, but not a cursor the server issued for this listing.
    InvalidCursor => ("invalid_cursor", Unprocessable),
    ServiceNotOnPlatform => ("service_not_on_platform", Unprocessable),
    SaudiOnlyService => ("saudi_only_service", Unprocessable),
    ManagerGrantsFixed => ("manager_grants_fixed", Unprocessable),
    UserSuspended => ("user_suspended", Unprocessable),
    SeatExpired => ("seat_expired", Unprocessable),
    InvalidActivationLink => ("invalid_activation_link", Unprocessable),
    WrongCode => ("wrong_code", Unprocessable),
    CodeExpired => ("code_expired", Unprocessable),
    NoPendingCode => ("no_pending_code", Unprocessable),
    FieldNotModifiable => ("field_not_modifiable", Unprocessable),
    ContactInUse => ("contact_in_use", Unprocessable),
    NoPendingChange => ("no_pending_change", Unprocessable),
    RenewalGracePassed => ("renewal_grace_passed", Unprocessable),
    AlreadyRenewed => ("already_renewed", Unprocessable),
    CodeLocked => ("code_locked", Locked),
    TooManyResends => ("too_many_resends", TooManyRequests),
    Busy => ("busy", Busy),
}

/// A refusal: stable code, message, and details a client can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct Rejection {
    pub kind: Kind,
    pub message: String,
    pub details: BTreeMap<String, Value>,
    /// Seconds a client should wait before trying again (429 and 503).
    pub retry_after: Option<u64>,
}

impl Rejection {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Rejection { kind, message: message.into(), details: BTreeMap::new(), retry_after: None }
    }

    pub fn detail(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.details.insert(name.to_owned(), value.into());
        self
    }

    /// Names the request field at fault.
    pub fn field(self, field: impl Into<String>) -> Self {
        self.detail("field", field.into())
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn invalid_request(field: &str, message: impl Into<String>) -> Self {
        Rejection::new(Kind::InvalidRequest, message).field(field)
    }

    pub fn not_found() -> Self {
        Rejection::new(Kind::NotFound, "no such organization or resource")
    }

    pub fn user_not_found() -> Self {
        Rejection::new(Kind::UserNotFound, "no such user in this organization")
    }

    pub fn busy() -> Self {
        Rejection::new(Kind::Busy, "the organization is busy with other changes; retry with the same request").retry_after(1)
    }
}

/// The result type of every use case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Our fault or a dependency's; never shown to the client.
    #[error("internal failure")]
    Internal(#[source] BoxError),
}

impl Error {
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Error::Internal(cause.into())
    }

    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Error::Rejected(rejection) => Some(rejection),
            Error::Internal(_) => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidCursor => {
                Error::Rejected(Rejection::new(Kind::InvalidCursor, "the cursor is not valid for this listing").field("cursor"))
            }
            other => Error::Internal(Box::new(other)),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for kind in Kind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "{code} used twice");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
    }
}
