//! Records that `record` steps wrote, by collection.

use axum::Json;
use axum::extract::State;

use super::extract::Path;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, AppState};

#[utoipa::path(get, path = "/api/v1/records/{collection}", tag = "records",
    params(("collection" = String, Path, description = "Collection written by `record` steps")),
    responses((status = 200, description = "The collection's records by key")))]
pub async fn list_records(
    State(state): State<AppState>,
    Path(collection): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let records = state.store.records().list(&collection).await?;
    let records: Vec<Value> = records
        .into_iter()
        .map(|(key, data)| json!({"key": key, "data": data}))
        .collect();
    Ok(Json(json!({"collection": collection, "records": records})))
}
