//! The reader of a USD-M batch's JSON list of orders (`batchOrders`), on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keygate_exchanges::binance::fuzz_batch(data);
});
