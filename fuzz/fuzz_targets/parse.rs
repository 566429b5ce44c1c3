//! Fuzz target `parse`: arbitrary bytes through `parse::parse` and the JSON renderer; the
//! properties live in `starling::fuzzcheck::parse` so the regression corpus replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling::fuzzcheck::parse::check(data);
});
