//! Seat prices. Muqeem: the organization's first seat ever is free, then a fixed price.
//! Qiwa: an annual price per seat by the organization's size tier. The numbers are
//! configuration (`shared/config/pricing.json`, or the `PRICING` environment variable).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Halalas;
use crate::organization::{Organization, PricingPlan, SizeTier};

pub const BUNDLED_PRICING: &str = include_str!("../config/pricing.json");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    pub muqeem_seat_halalas: Halalas,
    pub qiwa_seat_halalas_by_size: BTreeMap<SizeTier, Halalas>,
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("the pricing configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the pricing configuration has no Qiwa price for size {0:?}")]
    MissingTier(SizeTier),
}

impl PricingConfig {
    pub fn from_json(json: &str) -> Result<Self, PricingError> {
        let config: PricingConfig = serde_json::from_str(json)?;
        for tier in SizeTier::ALL {
            if !config.qiwa_seat_halalas_by_size.contains_key(&tier) {
                return Err(PricingError::MissingTier(tier));
            }
        }
        Ok(config)
    }

    pub fn bundled() -> Self {
        PricingConfig::from_json(BUNDLED_PRICING).expect("the bundled pricing is checked by a unit test")
    }

    /// The price of the next seat of `organization`, given how many it has ever bought.
    pub fn seat_price(&self, organization: &Organization, seats_sold_before: u64) -> Halalas {
        match organization.plan {
            PricingPlan::Muqeem if seats_sold_before == 0 => Halalas::ZERO,
            PricingPlan::Muqeem => self.muqeem_seat_halalas,
            PricingPlan::Qiwa => self.qiwa_seat_halalas_by_size[&organization.size()],
        }
    }

    /// Prices of `count` new seats bought together, in order.
    pub fn seat_prices(&self, organization: &Organization, seats_sold_before: u64, count: usize) -> Vec<Halalas> {
        (0..count as u64).map(|n| self.seat_price(organization, seats_sold_before + n)).collect()
    }

    /// Renewal is a new year of the same seat: always the current price, never the free one.
    pub fn renewal_price(&self, organization: &Organization) -> Halalas {
        self.seat_price(organization, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PersonId;
    use crate::organization::{Establishment, EstablishmentId, OrganizationId};

    fn organization(plan: PricingPlan, sizes: &[SizeTier]) -> Organization {
        Organization {
            id: OrganizationId::parse("7001234567").unwrap(),
            name: "Org".into(),
            plan,
            manager: PersonId::parse("1000000008").unwrap(),
            establishments: sizes
                .iter()
                .enumerate()
                .map(|(n, size)| Establishment { id: EstablishmentId::parse(&format!("1-{n}")).unwrap(), name: "E".into(), size: *size })
                .collect(),
            settings: Default::default(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            version: 1,
        }
    }

    #[test]
    fn the_first_muqeem_seat_ever_is_free_and_later_ones_cost_150_riyals() {
        let pricing = PricingConfig::bundled();
        let org = organization(PricingPlan::Muqeem, &[SizeTier::Giant]);
        assert_eq!(pricing.seat_prices(&org, 0, 3), vec![Halalas::ZERO, Halalas::from_riyals(150), Halalas::from_riyals(150)]);
        assert_eq!(pricing.seat_price(&org, 1), Halalas::from_riyals(150));
        assert_eq!(pricing.renewal_price(&org), Halalas::from_riyals(150));
    }

    #[test]
    fn a_qiwa_seat_costs_the_price_of_the_organizations_largest_establishment_tier() {
        let pricing = PricingConfig::bundled();
        let org = organization(PricingPlan::Qiwa, &[SizeTier::Small, SizeTier::Large, SizeTier::Micro]);
        assert_eq!(pricing.seat_price(&org, 0), pricing.qiwa_seat_halalas_by_size[&SizeTier::Large]);
        assert_eq!(pricing.seat_prices(&org, 0, 2), vec![Halalas::from_riyals(800); 2]);
    }

    #[test]
    fn refuses_a_configuration_missing_a_tier() {
        let json = r#"{"muqeem_seat_halalas":15000,"qiwa_seat_halalas_by_size":{"micro":1}}"#;
        assert!(matches!(PricingConfig::from_json(json), Err(PricingError::MissingTier(SizeTier::Small))));
    }
}
