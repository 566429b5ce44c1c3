//! Fuzz target `forward`: arbitrary bytes through the forwarding protocol decoder; the
//! properties live in `starling::fuzzcheck::forward` so they also run under `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling::fuzzcheck::forward::check(data);
});
