//! The DynamoDB tables: names from the environment, and their definition — the same one
//! `template.yaml` deploys (a test in `tests/` fails when the two differ).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use domain::store::{EMAIL_INDEX, EXPIRY_INDEX, LINK_TOKEN_INDEX, MOBILE_INDEX, TARGET_INDEX, Table, UNDELIVERED_INDEX};

/// The physical table names, from `USERS_TABLE`, `BALANCES_TABLE`, `AUDIT_TABLE` and
/// `OUTBOX_TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub users: String,
    pub balances: String,
    pub audit: String,
    pub outbox: String,
}

impl TableNames {
    pub fn from_env() -> Result<Self, String> {
        let read = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        Ok(TableNames {
            users: read("USERS_TABLE")?,
            balances: read("BALANCES_TABLE")?,
            audit: read("AUDIT_TABLE")?,
            outbox: read("OUTBOX_TABLE")?,
        })
    }

    /// `{prefix}-users`, `{prefix}-balances`, `{prefix}-audit`, `{prefix}-outbox` (local runs
    /// and tests).
    pub fn with_prefix(prefix: &str) -> Self {
        TableNames {
            users: format!("{prefix}-users"),
            balances: format!("{prefix}-balances"),
            audit: format!("{prefix}-audit"),
            outbox: format!("{prefix}-outbox"),
        }
    }

    pub fn of(&self, table: Table) -> &str {
        match table {
            Table::Users => &self.users,
            Table::Balances => &self.balances,
            Table::Audit => &self.audit,
            Table::Outbox => &self.outbox,
        }
    }
}

/// A global secondary index: name, partition key, sort key. All project every attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: &'static str,
    pub partition_key: &'static str,
    pub sort_key: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub table: Table,
    /// Every key attribute of the table and its indexes; all are strings.
    pub attributes: Vec<&'static str>,
    pub indexes: Vec<IndexSpec>,
    /// The time-to-live attribute, if the table has one.
    pub ttl_attribute: Option<&'static str>,
    /// Whether the table has a stream of new images (the outbox, read by `deliver`).
    pub stream: bool,
}

/// The TTL attribute of idempotency records (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at_epoch";

/// Every table: keys `pk` (partition) and `sk` (sort), on-demand billing.
pub fn table_specs() -> Vec<TableSpec> {
    vec![
        TableSpec {
            table: Table::Users,
            attributes: vec![
                "pk",
                "sk",
                "expiry_key",
                "expiry_at",
                "link_token",
                "email_key",
                "mobile_key",
                "undelivered_key",
                "undelivered_at",
            ],
            indexes: vec![
                IndexSpec { name: EXPIRY_INDEX, partition_key: "expiry_key", sort_key: Some("expiry_at") },
                IndexSpec { name: UNDELIVERED_INDEX, partition_key: "undelivered_key", sort_key: Some("undelivered_at") },
                IndexSpec { name: LINK_TOKEN_INDEX, partition_key: "link_token", sort_key: None },
                IndexSpec { name: EMAIL_INDEX, partition_key: "email_key", sort_key: None },
                IndexSpec { name: MOBILE_INDEX, partition_key: "mobile_key", sort_key: None },
            ],
            ttl_attribute: None,
            stream: false,
        },
        TableSpec {
            table: Table::Balances,
            attributes: vec!["pk", "sk"],
            indexes: vec![],
            ttl_attribute: Some(TTL_ATTRIBUTE),
            stream: false,
        },
        TableSpec {
            table: Table::Audit,
            attributes: vec!["pk", "sk", "audit_target"],
            indexes: vec![IndexSpec { name: TARGET_INDEX, partition_key: "audit_target", sort_key: Some("sk") }],
            ttl_attribute: None,
            stream: false,
        },
        TableSpec { table: Table::Outbox, attributes: vec!["pk", "sk"], indexes: vec![], ttl_attribute: Some(TTL_ATTRIBUTE), stream: true },
    ]
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().expect("name and type are set")
}

/// Creates the tables (for local runs against an emulator, and for tests). In AWS the
/// tables come from `template.yaml`.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<(), aws_sdk_dynamodb::Error> {
    for spec in table_specs() {
        let name = names.of(spec.table);
        let mut request = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range));
        for attribute in &spec.attributes {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            );
        }
        for index in &spec.indexes {
            let mut schema = vec![key(index.partition_key, KeyType::Hash)];
            schema.extend(index.sort_key.map(|sort| key(sort, KeyType::Range)));
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(schema))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("name, schema and projection are set"),
            );
        }
        if spec.stream {
            request = request.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .expect("enabled is set"),
            );
        }
        request.send().await?;
        if let Some(attribute) = spec.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder().enabled(true).attribute_name(attribute).build().expect("fields are set"),
                )
                .send()
                .await?;
        }
    }
    Ok(())
}
