//! `/api/v1/plugins`: what is loaded, what each plugin asks for and is granted, and its
//! configuration, which the API may replace (never its grants: those stay in
//! kontor.toml, so an API token cannot open the network to a plugin).

use axum::extract::State;
use axum::{Extension, Json};

use super::extract::Path;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Principal;
use super::{ApiError, AppState};

/// A plugin as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    /// `step` or `erp-connector`; absent when it does not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it asks for in `describe()`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub requested: Option<Value>,
    /// What `[plugin.NAME.grants]` gives it.
    #[schema(value_type = Object)]
    pub granted: Value,
    /// Its configuration now.
    #[schema(value_type = Object)]
    pub config: Value,
    /// `api` when set through `PUT /api/v1/plugins/{name}/config`, else `kontor.toml`.
    pub config_source: String,
    /// Why it does not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
}

/// Body of `PUT /api/v1/plugins/{name}/config`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfigBody {
    /// The plugin's new configuration, checked against its config schema.
    #[schema(value_type = Object)]
    config: Value,
}

fn registry(state: &AppState) -> Result<&std::sync::Arc<kontor_plugins::PluginRegistry>, ApiError> {
    state
        .engine
        .plugins()
        .ok_or_else(|| ApiError::NotFound("plugins are not enabled in this process".into()))
}

fn view(
    registry: &kontor_plugins::PluginRegistry,
    name: &str,
    plugin: &Result<std::sync::Arc<kontor_plugins::Plugin>, String>,
) -> PluginView {
    let settings = registry.settings_of(name);
    let granted = serde_json::to_value(kontor_plugins::GrantsView::from(&settings.grants))
        .unwrap_or_default();
    let config_source = if registry.is_overridden(name) {
        "api"
    } else {
        "kontor.toml"
    };
    match plugin {
        Ok(p) => {
            let info = p.info();
            PluginView {
                name: name.to_string(),
                world: Some(p.world().name().to_string()),
                version: Some(info.version.clone()),
                description: Some(info.description.clone()),
                requested: Some(serde_json::json!({
                    "http": info.hosts, "secrets": info.secrets, "kv": info.kv
                })),
                granted,
                config: p.settings().config.clone(),
                config_source: config_source.into(),
                problem: None,
            }
        }
        Err(problem) => PluginView {
            name: name.to_string(),
            world: None,
            version: None,
            description: None,
            requested: None,
            granted,
            config: settings.config,
            config_source: config_source.into(),
            problem: Some(problem.clone()),
        },
    }
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, description = "Every plugin of the plugins folder: world, version, requested and granted capabilities, configuration, or why it does not load", body = PluginList)))]
pub async fn list_plugins(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    // A process without plugins (tools, unit tests) has none to list.
    let plugins = match state.engine.plugins() {
        Some(registry) => registry
            .all()
            .iter()
            .map(|(name, plugin)| view(registry, name, plugin))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(PluginList { plugins }))
}

#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name (its file is NAME.wasm)")),
    responses((status = 200, body = PluginView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_plugin(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let registry = registry(&state)?;
    let all = registry.all();
    let plugin = all
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("there is no plugin `{name}`")))?;
    Ok(Json(view(registry, &name, plugin)))
}

#[utoipa::path(put, path = "/api/v1/plugins/{name}/config", tag = "plugins",
    request_body = PluginConfigBody,
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin, reloaded with the new configuration", body = PluginView),
              (status = 404, body = super::error::ErrorBody),
              (status = 422, description = "The configuration does not fit the plugin's schema (`field`: `config`); the old one stays", body = super::error::ErrorBody)))]
pub async fn put_plugin_config(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: Result<Json<PluginConfigBody>, axum::extract::rejection::JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    if !body.config.is_object() {
        return Err(ApiError::invalid("config", "must be a JSON object"));
    }
    configure(&state, &principal, &name, Some(body.config)).await
}

#[utoipa::path(delete, path = "/api/v1/plugins/{name}/config", tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin, reloaded with its kontor.toml configuration", body = PluginView),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn delete_plugin_config(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    configure(&state, &principal, &name, None).await
}

async fn configure(
    state: &AppState,
    principal: &Principal,
    name: &str,
    config: Option<Value>,
) -> Result<Json<PluginView>, ApiError> {
    let registry = registry(state)?;
    let plugin = registry
        .configure(name, config.clone())
        .await
        .map_err(|e| match e {
            kontor_plugins::RegistryError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            kontor_plugins::RegistryError::InvalidName { .. } => {
                ApiError::invalid("name", e.to_string())
            }
            kontor_plugins::RegistryError::Invalid { message, .. } => {
                ApiError::invalid("config", message)
            }
        })?;
    state
        .store
        .plugin_state()
        .put_config(
            name,
            config.as_ref(),
            &principal.actor(),
            chrono::Utc::now(),
        )
        .await?;
    Ok(Json(view(registry, name, &Ok(plugin))))
}
