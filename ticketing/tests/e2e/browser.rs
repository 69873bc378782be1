//! The browser client in Debian's headless chromium, driven over WebDriver: the whole journey
//! from sign-up to a paid order, and errors shown inline. Every step is saved as a screenshot
//! under `screenshots/<test>/` (git-ignored); on failure the last page is saved too and the
//! folder is named in the panic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use test_support::TestApp;

const WAIT: Duration = Duration::from_secs(15);

/// A chromium session with its driver, saving numbered screenshots of one test.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    step: usize,
    // Dropped last: stops chromedriver and, with its process group, chromium.
    _driver: devenv::ChromeDriver,
}

impl Browser {
    async fn open(app: &TestApp, test: &str) -> Result<Self> {
        let driver = devenv::start_chromedriver()?;
        let profile = driver.profile_dir(test)?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": devenv::CHROMIUM,
                "args": devenv::chromium_args(&profile),
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .with_context(|| format!("connect to chromedriver ({})", driver.log_path.display()))?;
        client.set_window_size(1280, 900).await?;
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../screenshots")
            .join(test);
        // Stale pictures from an earlier run would pass for this one's.
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots)?;
        Ok(Self {
            client,
            base: app.address.clone(),
            shots,
            step: 0,
            _driver: driver,
        })
    }

    async fn goto(&self, path: &str) -> Result<()> {
        Ok(self.client.goto(&format!("{}{path}", self.base)).await?)
    }

    async fn shot(&mut self, name: &str) -> Result<()> {
        self.step += 1;
        let png = self.client.screenshot().await?;
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }

    async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let field = self.client.find(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    async fn click(&self, css: &str) -> Result<()> {
        Ok(self.client.find(Locator::Css(css)).await?.click().await?)
    }

    /// Clicks the link or button whose text is `text`.
    async fn click_text(&self, text: &str) -> Result<()> {
        let xpath =
            format!("//a[normalize-space()='{text}'] | //button[normalize-space()='{text}']");
        Ok(self
            .client
            .find(Locator::XPath(&xpath))
            .await?
            .click()
            .await?)
    }

    /// Waits (bounded) until the element matching `css` shows text containing `text`.
    async fn wait_text(&self, css: &str, text: &str) -> Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                last = element.text().await.unwrap_or_default();
                if last.contains(text) {
                    return Ok(last);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("`{css}` never showed {text:?} (last: {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the current path starts with `prefix`; returns the path.
    async fn wait_path(&self, prefix: &str) -> Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let path = self.client.current_url().await?.path().to_owned();
            if path.starts_with(prefix) {
                return Ok(path);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("never reached {prefix} (at {path})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sign_up(&mut self, email: &str, shot: &str) -> Result<()> {
        self.goto("/").await?;
        self.click_text("Sign up").await?;
        self.wait_text("h1", "Create your account").await?;
        self.fill("#email", email).await?;
        self.fill("#password", "password").await?;
        self.shot(&format!("{shot}-form")).await?;
        self.click("form button[type=submit]").await?;
        self.wait_text(".nav-links", "Sign out").await?;
        self.shot(shot).await
    }

    /// Runs `journey`; on failure saves the page as it is and fails naming the folder.
    async fn run<F>(mut self, journey: F)
    where
        F: AsyncFnOnce(&mut Browser) -> Result<()>,
    {
        let outcome = journey(&mut self).await;
        if let Err(error) = outcome {
            let _ = self.shot("failure").await;
            if let Ok(html) = self.client.source().await {
                let _ = std::fs::write(self.shots.join("failure.html"), html);
            }
            let shots = self.shots.display().to_string();
            let _ = self.client.close().await;
            panic!("{error:#}\nscreenshots and the failing page: {shots}");
        }
        let _ = self.client.close().await;
    }
}

#[tokio::test]
async fn sell_buy_and_pay_in_a_real_browser() {
    let app = crate::spawn_stack().await;
    let browser = Browser::open(&app, "journey").await.unwrap();
    browser
        .run(async |b| {
            b.goto("/").await?;
            b.wait_text("h1", "Tickets for sale").await?;
            b.wait_text(".empty", "Nothing for sale").await?;
            b.shot("home-empty").await?;

            b.sign_up("seller@test.dev", "seller-signed-up").await?;
            b.click_text("Sell tickets").await?;
            b.wait_text("h1", "Sell a ticket").await?;
            b.fill("#title", "Radiohead, Madison Square Garden").await?;
            b.fill("#price", "abc").await?;
            b.click("form button[type=submit]").await?;
            b.wait_text("[data-error-for=price]", "Price must be")
                .await?;
            b.shot("sell-price-error").await?;
            b.fill("#price", "85.50").await?;
            b.click("form button[type=submit]").await?;
            b.wait_text("h1", "Radiohead").await?;
            let ticket_path = b.wait_path("/tickets/").await?;
            b.wait_text(".price", "$85.50").await?;
            b.wait_text(".note", "your listing").await?;
            b.shot("ticket-listed").await?;
            // Buying needs the orders service's replica of the ticket, which an event brings.
            let ticket_id = ticket_path.trim_start_matches("/tickets/").to_owned();
            app.get_until(
                &format!("/api/orders/tickets/{ticket_id}"),
                None,
                "the ticket in the orders replica",
                |body| body["id"] == ticket_id.as_str(),
            )
            .await;

            b.click_text("Sign out").await?;
            b.wait_text(".nav-links", "Sign in").await?;
            b.shot("signed-out").await?;

            b.sign_up("buyer@test.dev", "buyer-signed-up").await?;
            b.wait_text(".ticket-grid", "Radiohead").await?;
            b.shot("home-with-ticket").await?;
            b.click(".ticket-title a").await?;
            ensure!(
                b.wait_path("/tickets/").await? == ticket_path,
                "wrong ticket"
            );
            b.wait_text("form button", "Purchase").await?;
            b.shot("ticket-for-buyer").await?;
            b.click_text("Purchase").await?;
            let order_path = b.wait_path("/orders/").await?;

            // The countdown is live: it shows m:ss and goes down.
            let first = b.wait_text("[data-countdown-value]", ":").await?;
            ensure!(
                first.starts_with("14:") || first.starts_with("15:"),
                "countdown starts near 15 minutes, shows {first}"
            );
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let now = b
                    .client
                    .find(Locator::Css("[data-countdown-value]"))
                    .await?
                    .text()
                    .await?;
                if now != first {
                    break;
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "countdown stuck at {first}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let token = b.client.find(Locator::Css("#token")).await?;
            ensure!(
                token.prop("value").await?.as_deref() == Some("tok_visa"),
                "the local gateway's token is prefilled"
            );
            b.shot("order-countdown").await?;

            b.fill("#token", "tok_chargeDeclined").await?;
            b.click("[data-pay-form] button[type=submit]").await?;
            b.wait_text("[data-error-for=token]", "declined").await?;
            ensure!(
                b.wait_path("/orders/").await? == order_path,
                "stays on the order"
            );
            b.shot("payment-declined").await?;

            b.fill("#token", "tok_visa").await?;
            b.click("[data-pay-form] button[type=submit]").await?;
            b.wait_path("/orders").await?;
            b.wait_text("h1", "My orders").await?;
            // Completion travels as an event; the page shows it once orders has applied it.
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let status = b
                    .client
                    .find(Locator::Css("tr[data-order-id] [data-status]"))
                    .await?
                    .text()
                    .await?;
                if status == "Paid" {
                    break;
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "order never shown paid (last: {status})"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                b.client.refresh().await?;
            }
            b.wait_text("tr[data-order-id]", "Radiohead").await?;
            b.shot("orders-paid").await?;

            b.client.set_window_size(390, 844).await?;
            b.client.refresh().await?;
            b.wait_text("h1", "My orders").await?;
            b.shot("orders-paid-phone").await?;
            b.goto(&order_path).await?;
            b.wait_text(".note-success", "Paid").await?;
            b.shot("order-paid-phone").await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn sign_in_and_sign_up_errors_show_inline_in_a_real_browser() {
    let app = crate::spawn_stack().await;
    app.signup("known@test.dev", "password").await;
    let browser = Browser::open(&app, "inline-errors").await.unwrap();
    browser
        .run(async |b| {
            b.goto("/").await?;
            b.click_text("Sign in").await?;
            b.wait_text("h1", "Welcome back").await?;
            b.fill("#email", "known@test.dev").await?;
            b.fill("#password", "wrong-password").await?;
            b.click("form button[type=submit]").await?;
            b.wait_text("[data-form-errors]", "Invalid credentials")
                .await?;
            let email = b.client.find(Locator::Css("#email")).await?;
            ensure!(
                email.prop("value").await?.as_deref() == Some("known@test.dev"),
                "the email is kept"
            );
            b.shot("signin-invalid-credentials").await?;

            b.click_text("Create an account").await?;
            b.wait_text("h1", "Create your account").await?;
            b.fill("#email", "new@test.dev").await?;
            b.fill("#password", "ab").await?;
            b.click("form button[type=submit]").await?;
            b.wait_text("[data-error-for=password]", "between 4 and 128")
                .await?;
            let password = b.client.find(Locator::Css("#password")).await?;
            ensure!(
                password.attr("aria-invalid").await?.as_deref() == Some("true"),
                "the password field is marked invalid"
            );
            let focused = b.client.active_element().await?.attr("id").await?;
            ensure!(
                focused.as_deref() == Some("password"),
                "focus goes to the field in error, not {focused:?}"
            );
            b.shot("signup-password-too-short").await?;

            b.fill("#email", "known@test.dev").await?;
            b.fill("#password", "password").await?;
            b.click("form button[type=submit]").await?;
            b.wait_text("body", "Email in use").await?;
            b.shot("signup-email-in-use").await?;

            b.goto("/tickets/new").await?;
            b.wait_path("/auth/signin").await?;
            b.wait_text("h1", "Welcome back").await?;
            b.fill("#email", "known@test.dev").await?;
            b.fill("#password", "password").await?;
            b.click("form button[type=submit]").await?;
            b.wait_path("/tickets/new").await?;
            b.wait_text("h1", "Sell a ticket").await?;
            b.shot("back-where-sign-in-was-asked").await?;
            Ok(())
        })
        .await;
}

#[tokio::test]
async fn another_sites_sign_in_form_leaves_the_visitor_signed_out_in_a_real_browser() {
    let app = crate::spawn_stack().await;
    app.signup("attacker@test.dev", "password").await;
    let evil = crate::csrf::evil_page(&app).await;
    let browser = Browser::open(&app, "login-csrf").await.unwrap();
    browser
        .run(async |b| {
            b.goto("/").await?;
            b.wait_text(".nav-links", "Sign in").await?;
            // The other site's page submits its form to the client as soon as it loads.
            b.client.goto(&evil).await?;
            b.wait_text("main", "not sent from this site").await?;
            b.shot("refused").await?;
            b.goto("/").await?;
            let nav = b.wait_text(".nav-links", "Sign in").await?;
            ensure!(
                !nav.contains("Sign out"),
                "signed in by another site: {nav}"
            );
            b.shot("still-signed-out").await
        })
        .await;
}

#[tokio::test]
async fn swagger_ui_shows_every_document_under_the_strict_policy() {
    let app = crate::spawn_stack().await;
    let browser = Browser::open(&app, "swagger-ui").await.unwrap();
    browser
        .run(async |b| {
            b.goto("/api/docs").await?;
            b.wait_path("/api/docs/").await?;
            b.wait_text(".swagger-ui .info .title", "ticketing: auth")
                .await?;
            // Anything the Content-Security-Policy refuses from here on is recorded. Switching
            // definitions renders the whole UI again, so every document is shown under watch.
            b.client
                .execute(
                    "window.violations = [];
                     document.addEventListener('securitypolicyviolation', (e) =>
                         window.violations.push(e.violatedDirective + ' ' + e.blockedURI));",
                    vec![],
                )
                .await?;
            for (name, operations) in [("tickets", 4), ("orders", 5), ("payments", 1), ("auth", 4)]
            {
                let select = b.client.find(Locator::Css(".topbar select")).await?;
                select.select_by_label(name).await?;
                b.wait_text(".swagger-ui .info .title", &format!("ticketing: {name}"))
                    .await?;
                let shown = b.client.find_all(Locator::Css(".opblock")).await?.len();
                ensure!(shown == operations, "{name}: {shown} operations shown");
                b.shot(name).await?;
            }
            // Try it out: the UI calls the API on this origin (and sends the cookie).
            let operation = "#operations-users-current_user";
            b.click(&format!("{operation} .opblock-summary")).await?;
            // The operation unfolds with an animation: click until its Execute button shows.
            let deadline = tokio::time::Instant::now() + WAIT;
            let execute = loop {
                let _ = b.click(&format!("{operation} .try-out__btn")).await;
                let css = format!("{operation} button.execute");
                if let Ok(button) = b.client.find(Locator::Css(&css)).await {
                    break button;
                }
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "no Execute button after Try it out"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            execute.click().await?;
            b.wait_text(
                "#operations-users-current_user .live-responses-table",
                "currentUser",
            )
            .await?;
            b.shot("currentuser-tried").await?;
            let violations = b
                .client
                .execute("return window.violations;", vec![])
                .await?;
            ensure!(
                violations == serde_json::json!([]),
                "the page broke its policy: {violations}"
            );
            Ok(())
        })
        .await;
}
