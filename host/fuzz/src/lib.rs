//! Kontor's fuzz targets: each binary in `fuzz_targets/` hands libFuzzer's input to one
//! function of [`cases`], which the normal test suite also runs over the kept corpus.

pub mod cases;
