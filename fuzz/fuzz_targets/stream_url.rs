//! `ingest::name::resolve` on arbitrary app / publish name / tcUrl / configured domains.
//! Input: UTF-8 lines `app`, `name`, `tcUrl` (empty line = none), then one domain per line.
#![no_main]

use ingest::name::resolve;
use libfuzzer_sys::fuzz_target;
use media::stream::check_name;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let app = lines.next().unwrap_or("");
    let name = lines.next().unwrap_or("");
    let tc_url = lines.next().filter(|l| !l.is_empty());
    let domains: Vec<String> = lines.map(str::to_string).collect();
    let Ok(key) = resolve(app, name, tc_url, &domains) else {
        return;
    };
    check_name("domain", &key.domain).expect("resolved domain passes the key check");
    check_name("app", &key.app).expect("resolved app passes the key check");
    check_name("stream", &key.stream).expect("resolved stream passes the key check");
    assert_eq!(
        key.domain,
        key.domain.to_ascii_lowercase(),
        "domain is not lowercased"
    );
    assert!(
        !key.app.contains('?') && !key.stream.contains('?'),
        "query left in {key}"
    );
    assert!(
        !key.app.starts_with('/') && !key.app.ends_with('/'),
        "slashes left on app in {key}"
    );
});
