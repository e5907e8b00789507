//! A real headless Chromium (Debian's `chromium`, driven through Debian's `chromedriver` over
//! WebDriver) for the dashboard tests: one driver per test binary, a fresh browser profile per
//! test, a screenshot of each test's last page.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver {
    url: String,
    _process: Mutex<Child>,
}

fn driver() -> &'static Driver {
    static DRIVER: OnceLock<Driver> = OnceLock::new();
    DRIVER.get_or_init(|| {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: the test command installs Debian's chromium and chromium-driver (scripts/install-chromium.sh)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("a free port for chromedriver: {e}"))
            .port();
        // Statics are never dropped, so the driver (which ends its browsers) is told to stop
        // when its parent thread ends (PR_SET_PDEATHSIG); that thread is one of its own that
        // lives as long as the test process, not a test's.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut command = Command::new(CHROMEDRIVER);
            command
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe and changes only the child being spawned.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
            let spawned = command.spawn();
            let failed = spawned.is_err();
            sender.send(spawned).ok();
            if !failed {
                loop {
                    std::thread::park();
                }
            }
        });
        let process = receiver
            .recv()
            .unwrap_or_else(|e| panic!("the chromedriver thread: {e}"))
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not listen on {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver {
            url: format!("http://127.0.0.1:{port}"),
            _process: Mutex::new(process),
        }
    })
}

/// A browser session, closed (and its last page saved as a screenshot) when dropped.
pub struct Browser {
    pub client: Client,
    name: &'static str,
    profile: PathBuf,
}

/// Where the tests' screenshots go.
pub fn screenshot_dir() -> PathBuf {
    hub_tests::repo_root().join("target/dashboard-screenshots")
}

impl Browser {
    pub async fn open(name: &'static str) -> Self {
        let profile = std::env::temp_dir().join(format!(
            "hub-dashboard-{}-{name}-{}",
            std::process::id(),
            hub_tests::unique("p")
        ));
        // The flags keep Chromium from reaching for Google's services, which this machine's
        // closed network refuses (and a root user needs --no-sandbox).
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::rustls()
            .unwrap_or_else(|e| panic!("WebDriver client: {e}"))
            .capabilities(capabilities)
            .connect(&driver().url)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session: {e}"));
        Self {
            client,
            name,
            profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The element `css` selects, once it exists.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => self.fail(format!("{css} did not appear: {e}")).await,
        }
    }

    /// Fails the test, keeping a screenshot of the page as it was (`<test>-failed.png`).
    pub async fn fail(&self, message: String) -> ! {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).ok();
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{}-failed.png", self.name)), png).ok();
        }
        panic!("{message}");
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client
            .find_all(Locator::Css(css))
            .await
            .is_ok_and(|found| !found.is_empty())
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("{name} of {css}: {e}"))
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.ok();
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Types `text` into the field at `css` and presses Enter (submitting its form).
    pub async fn submit_into(&self, css: &str, text: &str) {
        self.type_into(css, text).await;
        self.find(css)
            .await
            .send_keys(&fantoccini::key::Key::Enter.to_string())
            .await
            .unwrap_or_else(|e| panic!("pressing Enter in {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Waits until `check` of the page's text in `css` holds.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if check(&text) {
                return text;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(format!(
                    "{what} did not happen within {within:?}; {css} shows {text:?}"
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Chooses `value` among the options of the select at `css` (as a person picking it would:
    /// its `change` event fires).
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css).await;
        self.run(&format!(
            "const s = document.querySelector({css:?}); s.value = {value:?}; \
             s.dispatchEvent(new Event('change'));"
        ))
        .await;
    }

    /// Runs `script` in the page.
    pub async fn run(&self, script: &str) {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
    }

    /// Waits until the number in attribute `name` of `css` satisfies `check` (0 while absent).
    pub async fn wait_for_attribute(
        &self,
        css: &str,
        name: &str,
        what: &str,
        check: impl Fn(u64) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            let value = self
                .attribute(css, name)
                .await
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if check(value) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail(format!("{what}: {css} {name} stayed at {value}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A number the page computed (`script` returns it).
    pub async fn number(&self, script: &str) -> Option<f64> {
        self.client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_f64())
    }

    pub async fn screenshot(&self) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).ok();
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{}.png", self.name)), png).ok();
        }
    }

    pub async fn close(self) {
        self.screenshot().await;
        self.client.clone().close().await.ok();
        std::fs::remove_dir_all(&self.profile).ok();
    }
}
