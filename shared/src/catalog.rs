//! The service catalog: data, not code. It lives in `shared/catalog/services.json`, is
//! versioned by its `version` field, and is parsed once when a function starts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::organization::PricingPlan;

/// The catalog shipped with this build.
pub const BUNDLED_CATALOG: &str = include_str!("../catalog/services.json");

/// The one service that makes its holder an administrator of an establishment.
pub const USER_MANAGEMENT: &str = "user_management";

/// A service code as it appears in the catalog, e.g. `iqama.renew`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceCode(String);

impl ServiceCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn user_management() -> Self {
        ServiceCode(USER_MANAGEMENT.to_owned())
    }

    pub fn is_user_management(&self) -> bool {
        self.0 == USER_MANAGEMENT
    }
}

impl fmt::Display for ServiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Muqeem,
    Qiwa,
    Both,
}

impl Platform {
    pub fn serves(self, plan: PricingPlan) -> bool {
        matches!((self, plan), (Platform::Both, _) | (Platform::Muqeem, PricingPlan::Muqeem) | (Platform::Qiwa, PricingPlan::Qiwa))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizedName {
    pub en: String,
    pub ar: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub code: ServiceCode,
    pub platform: Platform,
    pub saudi_only: bool,
    pub name: LocalizedName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: String,
    pub services: Vec<Service>,
    #[serde(skip)]
    index: BTreeMap<String, usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalog is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("service {0} appears twice in the catalog")]
    Duplicate(String),
    #[error("the catalog must contain the user_management service")]
    MissingUserManagement,
}

impl Catalog {
    pub fn from_json(json: &str) -> Result<Self, CatalogError> {
        let mut catalog: Catalog = serde_json::from_str(json)?;
        for (position, service) in catalog.services.iter().enumerate() {
            if catalog.index.insert(service.code.0.clone(), position).is_some() {
                return Err(CatalogError::Duplicate(service.code.0.clone()));
            }
        }
        if !catalog.index.contains_key(USER_MANAGEMENT) {
            return Err(CatalogError::MissingUserManagement);
        }
        Ok(catalog)
    }

    pub fn bundled() -> Self {
        Catalog::from_json(BUNDLED_CATALOG).expect("the bundled catalog is checked by a unit test")
    }

    /// Looks a code up; only codes that exist become `ServiceCode`s.
    pub fn service(&self, code: &str) -> Option<&Service> {
        self.index.get(code).map(|&position| &self.services[position])
    }

    pub fn code(&self, code: &str) -> Option<ServiceCode> {
        self.service(code).map(|service| service.code.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_catalog_has_every_service_the_product_names() {
        let catalog = Catalog::bundled();
        for code in [
            "exit_reentry_visa.issue",
            "exit_reentry_visa.extend",
            "exit_reentry_visa.cancel",
            "final_exit_visa.issue",
            "final_exit_visa.cancel",
            "iqama.issue",
            "iqama.renew",
            "passport.update",
            "reports.print",
            "work_permit.issue",
            "contract.manage",
            "employee.transfer",
            "occupation.change",
            "user_management",
        ] {
            assert!(catalog.service(code).is_some(), "{code} missing");
        }
        assert!(catalog.service("passport.update").unwrap().saudi_only);
        assert!(!catalog.service("iqama.renew").unwrap().saudi_only);
        assert!(catalog.services.iter().all(|s| !s.name.ar.is_empty() && !s.name.en.is_empty()));
    }

    #[test]
    fn refuses_a_catalog_with_duplicates() {
        let json = r#"{"version":"x","services":[
            {"code":"user_management","platform":"both","saudi_only":false,"name":{"en":"a","ar":"b"}},
            {"code":"user_management","platform":"both","saudi_only":false,"name":{"en":"a","ar":"b"}}]}"#;
        assert!(matches!(Catalog::from_json(json), Err(CatalogError::Duplicate(_))));
    }
}
