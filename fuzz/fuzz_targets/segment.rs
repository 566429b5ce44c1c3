//! Fuzz target `segment`: arbitrary bytes as the newest segment of a shard through the
//! reader, `verify` and recovery; the properties live in `starling::fuzzcheck::segment` so
//! the regression corpus replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    starling::fuzzcheck::segment::segment(data);
});
