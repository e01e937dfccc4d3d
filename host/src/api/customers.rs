//! `/api/v1/customers/{id}/overview`: the customer's 360° view from the ERP, through the
//! connector of `[erp] connector` (see [`crate::customer_overview`]).

use axum::Json;
use axum::extract::State;

use super::extract::{Path, Query};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::customer_overview::OverviewError;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OverviewParams {
    /// Ask the ERP again instead of answering from the cache.
    #[serde(default)]
    refresh: bool,
}

/// The customer's 360° view. Parts follow the connector contract's records
/// (`erp-types` in `sdk/wit/plugin.wit`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // documents the answer's shape for the OpenAPI document
pub struct CustomerOverview {
    /// Master data: name, VAT id, address, locale.
    #[schema(value_type = Object)]
    customer: serde_json::Value,
    /// Contacts with their preferred channel, consent and locale.
    #[schema(value_type = Option<Vec<Object>>)]
    contacts: serde_json::Value,
    /// Products owned: article, series, serial number, delivery and next maintenance.
    #[schema(value_type = Option<Vec<Object>>)]
    products: serde_json::Value,
    #[schema(value_type = Option<Vec<Object>>)]
    contracts: serde_json::Value,
    /// Payment terms, open items, credit limit, and `open_total_cents`.
    #[schema(value_type = Option<Object>)]
    account: serde_json::Value,
    /// The earliest next maintenance of the products owned.
    next_maintenance_on: Option<String>,
    /// Parts the connector could not deliver (they are `null`): `part`, `function`,
    /// `kind`, `message`. An answer with problems is not cached.
    #[schema(value_type = Vec<Object>)]
    problems: serde_json::Value,
    /// `connector`, `fetched_at` (RFC 3339) and `cached`.
    #[schema(value_type = Object)]
    source: serde_json::Value,
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/overview", tag = "customers",
    params(("id" = String, Path, description = "The customer's id in the ERP, e.g. `K-000042`"), OverviewParams),
    responses(
        (status = 200, description = "What the ERP knows about the customer, from the cache for `[erp] overview_cache` (60 s)", body = CustomerOverview),
        (status = 404, description = "No such customer, or no ERP connector configured", body = super::error::ErrorBody),
        (status = 502, description = "The connector failed for good (credentials, mapping); the message says why", body = super::error::ErrorBody),
        (status = 503, description = "The ERP is unavailable for now; `Retry-After` when it said how long", body = super::error::ErrorBody)))]
pub async fn customer_overview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<OverviewParams>,
) -> Result<impl IntoResponse, ApiError> {
    if id.trim().is_empty() || id.len() > 200 {
        return Err(ApiError::invalid(
            "id",
            "a customer id has 1 to 200 characters",
        ));
    }
    state
        .overviews
        .get(state.engine.plugins(), &id, params.refresh)
        .await
        .map(Json)
        .map_err(|e| match e {
            OverviewError::NotFound(_)
            | OverviewError::NotConfigured
            | OverviewError::NoPlugins => ApiError::NotFound(e.to_string()),
            OverviewError::Unavailable {
                message,
                retry_after,
            } => ApiError::Unavailable {
                message,
                retry_after,
            },
            OverviewError::Failed(message) => ApiError::BadGateway(message),
        })
}
