//! Grants: which services a user may use on which establishment.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::catalog::ServiceCode;
use crate::organization::EstablishmentId;

/// The permission matrix of one user: establishment → services. An establishment that is
/// absent, or present with no services, gives no access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(BTreeMap<EstablishmentId, BTreeSet<ServiceCode>>);

/// One (establishment, service) cell of the matrix.
pub type Cell = (EstablishmentId, ServiceCode);

impl Grants {
    pub fn new(matrix: BTreeMap<EstablishmentId, BTreeSet<ServiceCode>>) -> Self {
        // Empty rows carry no meaning; dropping them keeps equal matrices equal.
        Grants(matrix.into_iter().filter(|(_, services)| !services.is_empty()).collect())
    }

    pub fn holds(&self, establishment: &EstablishmentId, service: &ServiceCode) -> bool {
        self.0.get(establishment).is_some_and(|services| services.contains(service))
    }

    pub fn services_on(&self, establishment: &EstablishmentId) -> Option<&BTreeSet<ServiceCode>> {
        self.0.get(establishment)
    }

    /// Establishments on which these grants include `user_management`.
    pub fn administered(&self) -> BTreeSet<EstablishmentId> {
        self.0
            .iter()
            .filter(|(_, services)| services.iter().any(ServiceCode::is_user_management))
            .map(|(establishment, _)| establishment.clone())
            .collect()
    }

    pub fn establishments(&self) -> impl Iterator<Item = &EstablishmentId> {
        self.0.keys()
    }

    pub fn cells(&self) -> impl Iterator<Item = Cell> + '_ {
        self.0.iter().flat_map(|(establishment, services)| services.iter().map(move |s| (establishment.clone(), s.clone())))
    }

    pub fn matrix(&self) -> &BTreeMap<EstablishmentId, BTreeSet<ServiceCode>> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Cells present in `after` and not in `self` (added) and the reverse (removed).
    pub fn diff(&self, after: &Grants) -> (BTreeSet<Cell>, BTreeSet<Cell>) {
        let before: BTreeSet<Cell> = self.cells().collect();
        let after: BTreeSet<Cell> = after.cells().collect();
        let added = after.difference(&before).cloned().collect();
        let removed = before.difference(&after).cloned().collect();
        (added, removed)
    }
}
