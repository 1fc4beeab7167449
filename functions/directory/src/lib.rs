//! The directory function: reads the balance and ledger, the users, the audit trail.

use domain::app::App;
use domain::error::Error;
use domain::usecases::directory;
use gateway::routes::{DIRECTORY, READ_BALANCE};
use gateway::{Incoming, Reply};
use lambda_http::{Body, Request, Response};

/// Default and largest page sizes of listings.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

pub async fn handle(app: &App, request: Request) -> Response<Body> {
    gateway::serve(request, DIRECTORY, async |incoming| route(app, incoming).await).await
}

async fn route(app: &App, incoming: Incoming) -> Result<Reply, Error> {
    match incoming.route.key {
        READ_BALANCE => {
            let organization = incoming.organization()?;
            let page = incoming.page(DEFAULT_PAGE, MAX_PAGE)?;
            Reply::json(200, &directory::balance(app, &incoming.meta(), &organization, page).await?)
        }
        other => unreachable!("route {other} is not served here"),
    }
}
