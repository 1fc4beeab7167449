//! Every HTTP route, by the function that serves it. The Lambdas dispatch on these keys
//! (API Gateway's `routeKey`), the local server mounts them, and tests check that
//! `template.yaml` and `openapi.yaml` declare exactly these.

/// One route: API Gateway's route key (`METHOD /path/{param}`) and whether it needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub key: &'static str,
    /// No JWT: the email activation link is its own proof.
    pub public: bool,
}

impl Route {
    const fn private(key: &'static str) -> Route {
        Route { key, public: false }
    }

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

pub const CREATE_ORGANIZATION: &str = "POST /v1/organizations";
pub const SAVE_PERSON: &str = "PUT /v1/registry/persons/{id}";
pub const CREDIT_BALANCE: &str = "POST /v1/organizations/{org}/balance/credits";
pub const QUOTE: &str = "POST /v1/organizations/{org}/subscriptions/quote";
pub const SUBSCRIBE: &str = "POST /v1/organizations/{org}/subscriptions";
pub const READ_BALANCE: &str = "GET /v1/organizations/{org}/balance";
pub const LIST_USERS: &str = "GET /v1/organizations/{org}/users";
pub const ORGANIZATION_AUDIT: &str = "GET /v1/organizations/{org}/audit";
pub const USER_AUDIT: &str = "GET /v1/organizations/{org}/users/{id}/audit";
pub const CONFIRM_EMAIL: &str = "POST /v1/activations/email";
pub const CONFIRM_MOBILE: &str = "POST /v1/activations/mobile";
pub const RESEND_ACTIVATION: &str = "POST /v1/organizations/{org}/users/{id}/activation/resend";
pub const CATALOG: &str = "GET /v1/catalog/services";
pub const READ_PERMISSIONS: &str = "GET /v1/organizations/{org}/users/{id}/permissions";
pub const SET_PERMISSIONS: &str = "PUT /v1/organizations/{org}/users/{id}/permissions";
pub const CHECK: &str = "POST /v1/authorizations/check";
pub const READ_PROFILE: &str = "GET /v1/organizations/{org}/users/{id}";
pub const MODIFY_USER: &str = "PATCH /v1/organizations/{org}/users/{id}";
pub const CONFIRM_CONTACT: &str = "POST /v1/organizations/{org}/users/{id}/contact-verifications";
pub const SUSPEND_USER: &str = "POST /v1/organizations/{org}/users/{id}/suspension";
pub const RENEW: &str = "POST /v1/organizations/{org}/users/{id}/renewal";
pub const CANCEL_PENDING_CONTACT: &str = "DELETE /v1/organizations/{org}/users/{id}/pending-contact-changes/{channel}";
pub const READ_ORGANIZATION: &str = "GET /v1/organizations/{org}";
pub const CHANGE_SETTINGS: &str = "PATCH /v1/organizations/{org}/settings";

/// The functions and their routes, in the order `template.yaml` lists them.
pub const OPERATOR: &[Route] = &[Route::private(CREATE_ORGANIZATION), Route::private(SAVE_PERSON), Route::private(CREDIT_BALANCE)];
pub const SUBSCRIBE_FUNCTION: &[Route] = &[Route::private(QUOTE), Route::private(SUBSCRIBE), Route::private(RENEW)];
pub const ACTIVATE: &[Route] =
    &[Route { key: CONFIRM_EMAIL, public: true }, Route::private(CONFIRM_MOBILE), Route::private(RESEND_ACTIVATION)];
pub const DIRECTORY: &[Route] = &[
    Route::private(READ_ORGANIZATION),
    Route::private(READ_BALANCE),
    Route::private(LIST_USERS),
    Route::private(ORGANIZATION_AUDIT),
    Route::private(USER_AUDIT),
];
pub const GRANT: &[Route] =
    &[Route::private(CATALOG), Route::private(READ_PERMISSIONS), Route::private(SET_PERMISSIONS), Route::private(CHANGE_SETTINGS)];
pub const AUTHORIZE: &[Route] = &[Route::private(CHECK)];
pub const SUSPEND: &[Route] = &[Route::private(SUSPEND_USER)];
pub const MODIFY: &[Route] =
    &[Route::private(READ_PROFILE), Route::private(MODIFY_USER), Route::private(CONFIRM_CONTACT), Route::private(CANCEL_PENDING_CONTACT)];

/// `(function binary name, its routes)` for every HTTP function.
pub const FUNCTIONS: &[(&str, &[Route])] = &[
    ("operator", OPERATOR),
    ("subscribe", SUBSCRIBE_FUNCTION),
    ("activate", ACTIVATE),
    ("grant", GRANT),
    ("authorize", AUTHORIZE),
    ("modify", MODIFY),
    ("suspend", SUSPEND),
    ("directory", DIRECTORY),
];

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
        for (_, routes) in FUNCTIONS {
            for route in *routes {
                assert!(seen.insert(route.key), "{} served twice", route.key);
                assert!(["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&route.method()), "{}", route.key);
                assert!(route.path().starts_with("/v1/"), "{}", route.key);
            }
        }
    }
}
