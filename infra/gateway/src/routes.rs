//! Every HTTP route, by the function that serves it, as one enum per function: a function
//! dispatches with an exhaustive `match`, so a route without its arm does not compile. The
//! local server mounts them, and tests check that `template.yaml` and `openapi.yaml`
//! declare exactly these.

/// One route: API Gateway's route key (`METHOD /path/{param}`) and whether it needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub key: &'static str,
    /// No JWT: the email activation link is its own proof.
    pub public: bool,
}

impl Route {
    pub fn key(&self) -> &'static str {
        self.key
    }

    pub fn method(&self) -> &'static str {
        self.key.split_once(' ').map_or("", |(method, _)| method)
    }

    pub fn path(&self) -> &'static str {
        self.key.split_once(' ').map_or("", |(_, path)| path)
    }
}

/// The routes of one function.
pub trait Routes: Copy + Send + Sync + 'static {
    /// The function's binary name.
    const FUNCTION: &'static str;
    /// Every route, in the order `template.yaml` lists them.
    const ALL: &'static [Self];
    fn route(self) -> Route;

    /// The route with API Gateway's `routeKey`.
    fn of_key(key: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|route| route.route().key == key)
    }
}

macro_rules! routes {
    ($(#[$doc:meta])* $name:ident for $function:literal { $($variant:ident => $key:literal $(public $public:tt)?),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl Routes for $name {
            const FUNCTION: &'static str = $function;
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn route(self) -> Route {
                match self { $($name::$variant => Route { key: $key, public: routes!(@public $($public)?) }),+ }
            }
        }
    };
    (@public) => { false };
    (@public $public:tt) => { true };
}

routes! {
    /// Onboarding, the person registry, credits (operators).
    OperatorRoute for "operator" {
        CreateOrganization => "POST /v1/organizations",
        SavePerson => "PUT /v1/registry/persons/{id}",
        CreditBalance => "POST /v1/organizations/{org}/balance/credits",
    }
}

routes! {
    /// Buying and renewing seats.
    SubscribeRoute for "subscribe" {
        Quote => "POST /v1/organizations/{org}/subscriptions/quote",
        Subscribe => "POST /v1/organizations/{org}/subscriptions",
        Renew => "POST /v1/organizations/{org}/users/{id}/renewal",
        RenewalQuote => "GET /v1/organizations/{org}/users/{id}/renewal",
    }
}

routes! {
    /// Activation by link and code, and resending them.
    ActivateRoute for "activate" {
        ConfirmEmail => "POST /v1/activations/email" public true,
        ConfirmMobile => "POST /v1/activations/mobile",
        ResendActivation => "POST /v1/organizations/{org}/users/{id}/activation/resend",
    }
}

routes! {
    /// The catalog, permissions and the organization's settings.
    GrantRoute for "grant" {
        Catalog => "GET /v1/catalog/services",
        ReadPermissions => "GET /v1/organizations/{org}/users/{id}/permissions",
        SetPermissions => "PUT /v1/organizations/{org}/users/{id}/permissions",
        ChangeSettings => "PATCH /v1/organizations/{org}/settings",
    }
}

routes! {
    /// The check API.
    AuthorizeRoute for "authorize" {
        Check => "POST /v1/authorizations/check",
    }
}

routes! {
    /// Profiles and contact changes.
    ModifyRoute for "modify" {
        ReadProfile => "GET /v1/organizations/{org}/users/{id}",
        ModifyUser => "PATCH /v1/organizations/{org}/users/{id}",
        ConfirmContact => "POST /v1/organizations/{org}/users/{id}/contact-verifications",
        CancelPendingContact => "DELETE /v1/organizations/{org}/users/{id}/pending-contact-changes/{channel}",
        ResendMessage => "POST /v1/organizations/{org}/users/{id}/messages/{slot}/resend",
    }
}

routes! {
    /// Suspension.
    SuspendRoute for "suspend" {
        SuspendUser => "POST /v1/organizations/{org}/users/{id}/suspension",
    }
}

routes! {
    /// The organization, balance, users and audit trail, and their exports.
    DirectoryRoute for "directory" {
        ReadOrganization => "GET /v1/organizations/{org}",
        ReadBalance => "GET /v1/organizations/{org}/balance",
        ListUsers => "GET /v1/organizations/{org}/users",
        OrganizationAudit => "GET /v1/organizations/{org}/audit",
        UserAudit => "GET /v1/organizations/{org}/users/{id}/audit",
    }
}

/// The HTTP functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Operator,
    Subscribe,
    Activate,
    Grant,
    Authorize,
    Modify,
    Suspend,
    Directory,
}

impl Function {
    pub const ALL: [Function; 8] = [
        Function::Operator,
        Function::Subscribe,
        Function::Activate,
        Function::Grant,
        Function::Authorize,
        Function::Modify,
        Function::Suspend,
        Function::Directory,
    ];

    /// The binary name and the routes of the function.
    pub fn routes(self) -> (&'static str, Vec<Route>) {
        fn of<R: Routes>() -> (&'static str, Vec<Route>) {
            (R::FUNCTION, R::ALL.iter().map(|route| route.route()).collect())
        }
        match self {
            Function::Operator => of::<OperatorRoute>(),
            Function::Subscribe => of::<SubscribeRoute>(),
            Function::Activate => of::<ActivateRoute>(),
            Function::Grant => of::<GrantRoute>(),
            Function::Authorize => of::<AuthorizeRoute>(),
            Function::Modify => of::<ModifyRoute>(),
            Function::Suspend => of::<SuspendRoute>(),
            Function::Directory => of::<DirectoryRoute>(),
        }
    }

    pub fn name(self) -> &'static str {
        self.routes().0
    }
}

/// `(function binary name, its routes)` for every HTTP function.
pub fn functions() -> Vec<(&'static str, Vec<Route>)> {
    Function::ALL.iter().map(|function| function.routes()).collect()
}

/// Matches a concrete path against a route's path template, returning the parameters.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut template_parts = template.trim_matches('/').split('/');
    let mut path_parts = path.trim_matches('/').split('/');
    let mut params = Vec::new();
    loop {
        match (template_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(expected), Some(actual)) => {
                if let Some(name) = expected.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                    if actual.is_empty() {
                        return None;
                    }
                    params.push((name.to_owned(), percent_decode(actual)?));
                } else if expected != actual {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes in a path segment (API Gateway hands functions decoded values).
fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_templates_and_extracts_parameters() {
        assert_eq!(
            match_path("/v1/organizations/{org}/users/{id}/activation/resend", "/v1/organizations/7001/users/1000000008/activation/resend"),
            Some(vec![("org".into(), "7001".into()), ("id".into(), "1000000008".into())])
        );
        assert_eq!(match_path("/v1/organizations/{org}/balance", "/v1/organizations/7001/balance/credits"), None);
        assert_eq!(match_path("/v1/organizations/{org}/balance", "/v1/organizations//balance"), None);
        assert_eq!(match_path("/v1/registry/persons/{id}", "/v1/registry/persons/%D9%A1"), Some(vec![("id".into(), "١".into())]));
    }

    #[test]
    fn route_keys_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (_, routes) in functions() {
            for route in routes {
                assert!(seen.insert(route.key), "{} served twice", route.key);
                assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&route.method()), "{}", route.key);
                assert!(route.path().starts_with("/v1/"), "{}", route.key);
            }
        }
        assert!(ActivateRoute::ConfirmEmail.route().public);
        assert!(!ActivateRoute::ConfirmMobile.route().public);
        assert_eq!(SubscribeRoute::of_key("POST /v1/organizations/{org}/users/{id}/renewal"), Some(SubscribeRoute::Renew));
    }
}
