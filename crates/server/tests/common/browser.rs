//! Headless Chromium (Debian's `chromium` and `chromium-driver`, which `scripts/test` installs)
//! driven over WebDriver with thirtyfour: a fake camera (optionally playing a `.y4m` file), the
//! browser's console log read back so that a test fails on any error, and screenshots kept
//! as artefacts under `target/test-artifacts/`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, LoggingPrefsLogLevel};

use crate::common::{http_get, runtime, WAIT};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; the driver and browser end when it is dropped.
pub struct Browser {
    pub driver: Option<WebDriver>,
    chromedriver: Child,
}

/// Panics when Chromium or its driver is missing (tests never skip).
pub fn require_chromium() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install Debian's chromium and chromium-driver (scripts/test does)"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts Chromium with a fake camera: the `.y4m` file when given (looped), else
    /// Chromium's own moving pattern.
    pub fn start(camera: Option<&Path>) -> Browser {
        require_chromium();
        let port = free_port();
        let mut chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(&format!("{url}/status")).map_or(true, |r| r.status != 200) {
            if Instant::now() > deadline {
                let _ = chromedriver.kill();
                panic!("chromedriver did not answer on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).unwrap();
        let profile = tempfile::tempdir().expect("profile dir").keep();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,900".into(),
            "--use-fake-device-for-media-stream".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--allow-loopback-in-peer-connection".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        if let Some(file) = camera {
            args.push(format!(
                "--use-file-for-fake-video-capture={}",
                file.display()
            ));
        }
        for a in &args {
            caps.add_arg(a).unwrap();
        }
        caps.set_browser_log_level(LoggingPrefsLogLevel::All)
            .unwrap();
        let driver = runtime()
            .block_on(WebDriver::new(&url, caps))
            .unwrap_or_else(|e| {
                let _ = chromedriver.kill();
                panic!("no Chromium session: {e}")
            });
        runtime()
            .block_on(driver.set_script_timeout(Duration::from_secs(60)))
            .unwrap();
        Browser {
            driver: Some(driver),
            chromedriver,
        }
    }

    pub fn driver(&self) -> &WebDriver {
        self.driver.as_ref().expect("browser running")
    }

    pub fn goto(&self, url: &str) {
        runtime()
            .block_on(self.driver().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `body` (an async function body: `await` allowed, its `return` value is the
    /// result) in the page, with `args` as `args`.
    pub fn run(&self, body: &str, args: Value) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1]; const args = arguments[0];\n\
             (async () => {{ {body} }})().then(v => done({{ok: v === undefined ? null : v}}), \
             e => done({{error: String(e && e.stack ? e.stack : e)}}));"
        );
        let ret = runtime()
            .block_on(self.driver().execute_async(&script, vec![args]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{body}"));
        let v = ret.json().clone();
        if let Some(e) = v.get("error") {
            panic!("script threw: {}\n{body}", e.as_str().unwrap_or(""));
        }
        v["ok"].clone()
    }

    /// Polls `expression` (a JavaScript expression) until it is truthy; returns its value.
    pub fn wait_for(&self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.run(&format!("return ({expression});"), Value::Null);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The console's errors since the last call (SEVERE entries).
    pub fn console_errors(&self) -> Vec<String> {
        runtime()
            .block_on(self.driver().browser_log())
            .expect("browser log")
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect()
    }

    /// Fails the test on any console error.
    pub fn assert_no_console_errors(&self, page: &str) {
        let errors = self.console_errors();
        assert!(errors.is_empty(), "console errors on {page}: {errors:#?}");
    }

    /// Saves a screenshot as `target/test-artifacts/{name}.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = artifacts_dir();
        let path = dir.join(format!("{name}.png"));
        let png = runtime()
            .block_on(self.driver().screenshot_as_png())
            .expect("screenshot");
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

/// `target/test-artifacts`, made when missing.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            let _ = runtime().block_on(driver.quit());
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}
