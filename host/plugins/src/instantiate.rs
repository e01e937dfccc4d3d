//! Instantiating a pre-linked component for one call, with a short second chance when
//! the operating system refuses a resource for a moment.
//!
//! Wasmtime builds a module's memory image lazily, on its first instantiation: it copies
//! the initial heap into a `memfd` and seals it. On a busy machine Linux can refuse the
//! seal with `EBUSY` while the freshly written pages are still referenced elsewhere
//! (`memfd_wait_for_pins` gives up after ~150 ms). Wasmtime does not remember the failure,
//! so trying again shortly after succeeds. Anything else — a trap in a start function, a
//! full instance pool, a missing import — is returned at once, unchanged.

use std::future::Future;
use std::time::Duration;

use wasmtime::Store;

use crate::sandbox::State;
use crate::{bindings, connector_bindings};

/// How often an instantiation the host refused is tried again, and the first pause.
const RETRIES: u32 = 4;
const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// A pre-instantiated component that can be instantiated in a plugin store.
pub(crate) trait Instantiate {
    type Instance;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a;
}

impl Instantiate for bindings::StepPre<State> {
    type Instance = bindings::Step;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a {
        self.instantiate_async(store)
    }
}

impl Instantiate for connector_bindings::ErpConnectorPre<State> {
    type Instance = connector_bindings::ErpConnector;
    fn instantiate<'a>(
        &'a self,
        store: &'a mut Store<State>,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send + 'a {
        self.instantiate_async(store)
    }
}

/// Instantiates `pre` in `store`, trying again (25, 50, 100, 200 ms apart) while the
/// failure is the host's operating system refusing a resource.
pub(crate) async fn instantiate<P: Instantiate>(
    pre: &P,
    store: &mut Store<State>,
) -> wasmtime::Result<P::Instance> {
    let mut pause = FIRST_PAUSE;
    for _ in 0..RETRIES {
        match pre.instantiate(store).await {
            Err(error) if refused_by_the_host(&error) => {
                tracing::debug!(error = %format!("{error:#}"), "instantiation refused by the host; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            answer => return answer,
        }
    }
    pre.instantiate(store).await
}

/// Whether an instantiation failed on an operating-system error of the host (the memory
/// image's `memfd`) rather than on anything the component did.
pub(crate) fn refused_by_the_host(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ResourceBusy
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::refused_by_the_host;

    #[test]
    fn only_a_passing_os_refusal_is_tried_again() {
        let busy = wasmtime::Error::from(std::io::Error::from_raw_os_error(16))
            .context("cannot add seals to the memfd");
        assert!(refused_by_the_host(&busy));
        let missing = wasmtime::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!refused_by_the_host(&missing));
        assert!(!refused_by_the_host(&wasmtime::Error::msg("unreachable")));
    }
}
