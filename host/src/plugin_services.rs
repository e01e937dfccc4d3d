//! What the plugin runtime borrows from the rest of Kontor for capability calls: secrets
//! from the encrypted store (decrypted only for a granted name) and the committed
//! key-value state of a plugin installation.

use std::sync::Arc;

use kontor_plugins::{BoxFuture, HostServices};

use crate::secrets::MasterKey;
use crate::store::Store;

pub struct StoreServices {
    store: Store,
    key: Arc<MasterKey>,
}

impl StoreServices {
    pub fn new(store: Store, key: Arc<MasterKey>) -> Arc<StoreServices> {
        Arc::new(StoreServices { store, key })
    }
}

impl HostServices for StoreServices {
    fn secret<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            // The server's own keys are not any plugin's, whatever its grants say.
            crate::secrets::check_client_name(name).map_err(|e| e.to_string())?;
            let value = crate::secrets::read(&self.store, &self.key, name)
                .await
                .map_err(|e| e.to_string())?;
            value
                .map(|v| {
                    String::from_utf8(v.expose().to_vec())
                        .map_err(|_| format!("secret `{name}` is not UTF-8 text"))
                })
                .transpose()
        })
    }

    fn kv_get<'a>(
        &'a self,
        plugin: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            self.store
                .plugin_state()
                .kv_get(plugin, key)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
