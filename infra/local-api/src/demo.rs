//! The `--demo` seed: two organizations, registry persons and a credited balance, made
//! through the same use cases the API calls, as an operator.

use std::collections::BTreeSet;

use domain::actions::operator::{Credit, Onboard, SavePerson};
use domain::contact::{Email, SaudiMobile};
use domain::env::Env;
use domain::error::Error;
use domain::identity::PersonId;
use domain::money::Halalas;
use domain::organization::{Establishment, EstablishmentId, OrganizationId, PricingPlan, SizeTier};
use domain::person::{Nationality, PersonName};
use domain::pipeline::{RequestMeta, run};
use domain::policy::Caller;
use time::Duration;

pub const OPERATOR_SUBJECT: &str = "operator@platform.example";
pub const SERVICE_SUBJECT: &str = "visa-service";

pub struct DemoPerson {
    pub id: &'static str,
    pub name_en: &'static str,
    pub name_ar: &'static str,
    pub nationality: &'static str,
    /// Days from today; negative is already expired. `None` for citizens.
    pub iqama_valid_days: Option<i64>,
    pub employers: &'static [&'static str],
    pub email: &'static str,
    pub mobile: &'static str,
    /// Who the person is in the demo, in English and Arabic (the console's sign-in page).
    pub note: &'static str,
    pub note_ar: &'static str,
    /// The organization whose establishment employs the person.
    pub organization: &'static str,
}

pub const MUQEEM_ORGANIZATION: &str = "7001234567";
pub const QIWA_ORGANIZATION: &str = "7009876543";

pub const PERSONS: &[DemoPerson] = &[
    DemoPerson {
        id: "1012345672",
        name_en: "Abdullah Al-Harbi",
        name_ar: "عبدالله الحربي",
        nationality: "SA",
        iqama_valid_days: None,
        employers: &["1-123456"],
        email: "abdullah@nukhba.example",
        mobile: "0501234567",
        note: "manager of 7001234567 (Muqeem plan)",
        note_ar: "مدير المنظمة 7001234567 (باقة مقيم)",
        organization: "7001234567",
    },
    DemoPerson {
        id: "1023456781",
        name_en: "Sara Al-Qahtani",
        name_ar: "سارة القحطاني",
        nationality: "SA",
        iqama_valid_days: None,
        employers: &["1-123456"],
        email: "sara@nukhba.example",
        mobile: "0551234567",
        note: "citizen, employee of 1-123456",
        note_ar: "مواطن، موظف في المنشأة 1-123456",
        organization: "7001234567",
    },
    DemoPerson {
        id: "2345678904",
        name_en: "Ahmed Khan",
        name_ar: "أحمد خان",
        nationality: "IN",
        iqama_valid_days: Some(700),
        employers: &["1-123456"],
        email: "ahmed@nukhba.example",
        mobile: "0561234567",
        note: "resident with a valid iqama, employee of 1-123456",
        note_ar: "مقيم بإقامة سارية، موظف في المنشأة 1-123456",
        organization: "7001234567",
    },
    DemoPerson {
        id: "2456789011",
        name_en: "Ravi Kumar",
        name_ar: "رافي كومار",
        nationality: "IN",
        iqama_valid_days: Some(-30),
        employers: &["1-123457"],
        email: "ravi@nukhba.example",
        mobile: "0571234567",
        note: "resident whose iqama expired: cannot be subscribed",
        note_ar: "مقيم انتهت إقامته: لا يمكن الاشتراك له",
        organization: "7001234567",
    },
    DemoPerson {
        id: "2567890120",
        name_en: "Maria Santos",
        name_ar: "ماريا سانتوس",
        nationality: "PH",
        iqama_valid_days: Some(400),
        employers: &["1-123457"],
        email: "maria@nukhba.example",
        mobile: "0581234567",
        note: "resident, employee of 1-123457",
        note_ar: "مقيم، موظف في المنشأة 1-123457",
        organization: "7001234567",
    },
    DemoPerson {
        id: "1034567899",
        name_en: "Faisal Al-Otaibi",
        name_ar: "فيصل العتيبي",
        nationality: "SA",
        iqama_valid_days: None,
        employers: &["4-765432"],
        email: "faisal@binaa.example",
        mobile: "0591234567",
        note: "manager of 7009876543 (Qiwa plan)",
        note_ar: "مدير المنظمة 7009876543 (باقة قوى)",
        organization: "7009876543",
    },
    DemoPerson {
        id: "1076543212",
        name_en: "Noura Al-Dosari",
        name_ar: "نورة الدوسري",
        nationality: "SA",
        iqama_valid_days: None,
        employers: &["4-765432"],
        email: "noura@binaa.example",
        mobile: "0541234567",
        note: "citizen, employee of 4-765432",
        note_ar: "مواطن، موظف في المنشأة 4-765432",
        organization: "7009876543",
    },
];

fn operator() -> RequestMeta {
    RequestMeta::new(Caller::Operator(OPERATOR_SUBJECT.to_owned()), "demo-seed")
}

fn establishment(id: &str, name: &str, size: SizeTier) -> Establishment {
    Establishment { id: EstablishmentId::parse(id).expect("demo establishment ids are valid"), name: name.to_owned(), size }
}

/// Seeds the demo data. Safe to run once per fresh store.
pub async fn seed(env: &Env) -> Result<(), Error> {
    let meta = operator();
    let today = domain::clock::saudi_day(env.clock.now());
    for person in PERSONS {
        let command = SavePerson {
            id: PersonId::parse(person.id).expect("demo ids are valid"),
            name: PersonName { ar: Some(person.name_ar.to_owned()), en: Some(person.name_en.to_owned()) },
            nationality: Nationality::parse(person.nationality).expect("demo nationalities are valid"),
            iqama_expiry: person.iqama_valid_days.map(|days| today + Duration::days(days)),
            employers: person.employers.iter().map(|e| EstablishmentId::parse(e).expect("valid")).collect::<BTreeSet<_>>(),
            email: Email::parse(person.email).expect("valid"),
            mobile: SaudiMobile::parse(person.mobile).expect("valid"),
        }
        .check()?;
        run(env, &meta, &command).await?;
    }
    let muqeem = Onboard::new(
        OrganizationId::parse(MUQEEM_ORGANIZATION).expect("valid"),
        "Al Nukhba Trading / مؤسسة النخبة للتجارة".to_owned(),
        PricingPlan::Muqeem,
        PersonId::parse("1012345672").expect("valid"),
        vec![
            establishment("1-123456", "Riyadh head office", SizeTier::Medium),
            establishment("1-123457", "Jeddah branch", SizeTier::Small),
        ],
    )?;
    run(env, &meta, &muqeem).await?;
    let qiwa = Onboard::new(
        OrganizationId::parse(QIWA_ORGANIZATION).expect("valid"),
        "Binaa Contracting / شركة بناء للمقاولات".to_owned(),
        PricingPlan::Qiwa,
        PersonId::parse("1034567899").expect("valid"),
        vec![establishment("4-765432", "Dammam yard", SizeTier::Large)],
    )?;
    run(env, &meta, &qiwa).await?;
    for (organization, riyals, reference) in [(MUQEEM_ORGANIZATION, 1_000, "DEMO-TOPUP-1"), (QIWA_ORGANIZATION, 5_000, "DEMO-TOPUP-2")] {
        let credit = Credit::new(OrganizationId::parse(organization).expect("valid"), Halalas::from_riyals(riyals), reference)?;
        run(env, &meta, &credit).await?;
    }
    Ok(())
}
