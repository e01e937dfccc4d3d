#![no_main]

use std::sync::LazyLock;

use kontor_fuzz::cases::Api;

static API: LazyLock<Api> = LazyLock::new(|| {
    Api::new(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows"))
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| API.call(data));
