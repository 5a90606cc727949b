//! Every reader of a Binance answer (body, status, weight and back-off headers) on
//! arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_exchanges::binance::fuzz_answer(data);
});
