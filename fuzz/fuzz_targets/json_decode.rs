//! The JSON fast path against serde_json, as in `tests/json_differential.rs`:
//! for any line, `decode_object` must answer exactly as `decode_with_serde`,
//! and the fast path must never take a line serde_json rejects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir::decode::json::{decode_object, decode_with_serde};
use weir::decode::scan::index_object;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return; // lines are text by the time they are decoded
    };
    let mut fields = Vec::new();
    let fast = index_object(line, &mut fields);
    let oracle = decode_with_serde(line.to_string(), Vec::new(), 0);
    match &oracle {
        Ok(event) if fast => assert_eq!(fields.as_slice(), event.raw_parts().1),
        Ok(_) => {}
        Err(e) => assert!(!fast, "fast path took a line serde_json rejects ({e:?})"),
    }
    assert_eq!(decode_object(line.to_string(), 0), oracle);
});
