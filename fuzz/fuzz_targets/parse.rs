//! Arbitrary bytes (read as lossy UTF-8) through the exposition parser in both formats, with and
//! without the name filter. The parser must never panic, and what it reports must be coherent.
#![no_main]

use kubesignal::exposition::{Entry, Format, Parser};
use libfuzzer_sys::fuzz_target;

fn keep(name: &str) -> bool {
    name.len() % 2 == 0
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let mut eof_seen = false;
        for entry in Parser::new(&text, format) {
            match entry {
                Ok(Entry::Eof) => {
                    assert_eq!(format, Format::OpenMetrics);
                    eof_seen = true;
                }
                Ok(Entry::Sample(s)) => {
                    assert!(!s.name.is_empty());
                    assert!(!eof_seen, "sample after # EOF");
                }
                Ok(_) => {}
                Err(e) => assert!(e.line >= 1 && e.line <= lines + 1, "{e} of {lines} lines"),
            }
        }
        for entry in Parser::new(&text, format).with_name_filter(keep) {
            if let Ok(Entry::Sample(s)) = entry {
                assert!(!s.name.is_empty());
            }
        }
    }
});
