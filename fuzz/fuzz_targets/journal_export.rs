//! Fuzz target `journal_export`: arbitrary bytes as a journal upload body, in arbitrary
//! chunks; the properties live in `starling::fuzzcheck::journal` so the regression corpus
//! replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling::fuzzcheck::journal::check(data);
});
