//! The template set in force, shared by whoever renders (the email dispatcher) and
//! whoever reloads (the engine, with the workflows).

use std::sync::{Arc, RwLock};

use super::TemplateSet;

/// The template set in force: loaded with the workflows, swapped when they reload, read
/// by whoever renders. Cheap to clone; every clone sees the same set.
#[derive(Debug, Clone, Default)]
pub struct CurrentTemplates(Arc<RwLock<Arc<TemplateSet>>>);

impl CurrentTemplates {
    /// A handle holding `set`.
    pub fn new(set: Arc<TemplateSet>) -> CurrentTemplates {
        CurrentTemplates(Arc::new(RwLock::new(set)))
    }

    /// The set in force now.
    pub fn get(&self) -> Arc<TemplateSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `set` in force for every clone of this handle.
    pub fn replace(&self, set: Arc<TemplateSet>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = set;
    }
}
