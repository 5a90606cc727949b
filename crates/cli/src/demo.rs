//! `keygate demo`: the whole story in a few seconds, in a throwaway home.
//!
//! It starts the Binance simulator, runs the real `keygate` commands an operator would
//! (init, account add, client issue, serve, client revoke, audit verify) and plays a bot
//! that signs its requests with its virtual key, exactly as ccxt would.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use keygate_exchanges::binance;
use keygate_mockex::Hook;
use rand::distributions::{Alphanumeric, DistString};
use serde_json::Value;

/// Options of `keygate demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep the temporary home afterwards, to look at it.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The home and, beside it, the master key file, as `doctor` wants them kept apart.
    let root = std::env::temp_dir().join(format!(
        "keygate-demo-{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 8)
    ));
    let result = runtime.block_on(story(&root.join("home"), &root.join("master.key")));
    if args.keep {
        eprintln!(
            "demo home kept at {}, its master key file at {}",
            root.join("home").display(),
            root.join("master.key").display()
        );
    } else {
        // Best effort: a leftover temp directory holds only the demo's throwaway keys.
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn step(&self, text: &str) {
        println!("\n{}", self.paint("1;36", &format!("▶ {text}")));
    }
    fn command(&self, text: &str) {
        println!("  {}", self.paint("2", &format!("$ {text}")));
    }
    fn ok(&self, text: &str) {
        println!("  {} {text}", self.paint("1;32", "✔ allowed"));
    }
    fn denied(&self, text: &str) {
        println!("  {} {text}", self.paint("1;31", "✘ denied "));
    }
}

async fn story(home: &Path, keyfile: &Path) -> anyhow::Result<()> {
    let style = Style {
        color: crate::output::colours(&std::io::stdout()),
    };
    let exe = std::env::current_exe().context("locating the keygate binary")?;
    let real_key = Alphanumeric.sample_string(&mut rand::thread_rng(), 64);
    let real_secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 64);

    style.step("Start a local Binance simulator (stands in for api.binance.com)");
    let credentials = vec![keygate_mockex::Credential::hmac(&real_key, &real_secret)];
    let exchange = keygate_mockex::spawn("127.0.0.1:0".parse()?, credentials).await?;
    println!("  simulator on {}", exchange.url());

    style.step("Create the vault and put the real key in it");
    std::fs::create_dir_all(home).context("creating the demo home")?;
    keygate(
        &exe,
        home,
        &style,
        &["init", "--master-key-file", path_str(keyfile)?],
        None,
    )?;
    keygate(
        &exe,
        home,
        &style,
        &[
            "account",
            "add",
            "--exchange",
            "binance",
            "--label",
            "main",
            "--upstream",
            &exchange.url(),
        ],
        Some(&format!("{real_key}\n{real_secret}\n")),
    )?;

    style.step("Issue a virtual key for a bot: trade BTCUSDT and ETHUSDT only, at most 5000 USDT per order");
    let issued = keygate(
        &exe,
        home,
        &style,
        &[
            "client",
            "issue",
            "--account",
            "main",
            "--name",
            "bot1",
            "--scope",
            "read,trade",
            "--symbols",
            "BTC/USDT,ETHUSDT",
            "--max-order-notional",
            "5000",
            "--json",
        ],
        None,
    )?;
    let issued: Value = serde_json::from_str(&issued).context("reading client issue --json")?;
    let bot_key = issued["api_key"]
        .as_str()
        .context("client issue printed no api_key")?
        .to_owned();
    let bot_secret = issued["secret"]
        .as_str()
        .context("client issue printed no secret")?
        .to_owned();
    println!(
        "  bot1 holds {}… — the real key never leaves the vault",
        &bot_key[..8]
    );

    style.step("Send alerts to a webhook (a local receiver stands in for Slack or a pager)");
    let receiver = keygate_mockex::spawn_receiver("127.0.0.1:0".parse()?, Vec::new()).await?;
    let webhook = format!(
        "\n[[alerts.webhook]]\nurl = \"{}\"\n",
        receiver.url("/keygate")
    );
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).context("reading the demo config")?;
    text.push_str(&webhook);
    std::fs::write(&config, text).context("writing the demo config")?;
    for line in webhook.trim().lines() {
        println!("  {}", style.paint("2", &format!("config.toml: {line}")));
    }

    style.step("Start the gateway");
    style.command("keygate serve --listen 127.0.0.1:0");
    let mut server = Server::start(&exe, home)?;
    let bot = Bot {
        // Loopback only: a proxy from the environment must not carry it elsewhere.
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("starting the bot's HTTP client")?,
        base: format!("http://{}/binance", server.addr),
        api_key: bot_key,
        secret: bot_secret,
    };

    style.step("The bot trades through keygate as if it were Binance");
    let (status, body) = bot.signed("GET", "/api/v3/account", "").await?;
    report(&style, "read balances", status, &body);
    let (status, body) = bot
        .signed(
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=50000",
        )
        .await?;
    report(&style, "limit buy 0.01 BTCUSDT @ 50000", status, &body);
    let (status, body) = bot
        .signed(
            "POST",
            "/api/v3/order",
            "symbol=DOGEUSDT&side=BUY&type=MARKET&quoteOrderQty=100",
        )
        .await?;
    report(&style, "market buy DOGEUSDT", status, &body);
    let (status, body) = bot
        .signed(
            "POST",
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1",
        )
        .await?;
    report(
        &style,
        "market buy 1 BTCUSDT (priced from the ticker)",
        status,
        &body,
    );
    let (status, body) = bot
        .signed(
            "POST",
            "/sapi/v1/capital/withdraw/apply",
            "coin=USDT&address=TXYZattacker&amount=1000&network=TRX",
        )
        .await?;
    report(&style, "withdraw 1000 USDT", status, &body);

    style.step("Revoke the bot's key while the gateway runs");
    // The gateway writes reads and denials within its batch window (100 ms), the revoke
    // at once: without the wait, the log shows the revoke before the denials above,
    // which read as coming after it (found by review).
    tokio::time::sleep(Duration::from_millis(300)).await;
    keygate(&exe, home, &style, &["client", "revoke", "bot1"], None)?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = bot.signed("GET", "/api/v3/account", "").await?;
    report(&style, "read balances with the revoked key", status, &body);

    let reached = exchange.simulator().requests();
    let orders = reached.iter().filter(|r| r.path == "/api/v3/order").count();
    let withdrawals = reached
        .iter()
        .filter(|r| r.path.ends_with("/withdraw/apply"))
        .count();
    println!("\n  the simulator received {orders} order(s) and {withdrawals} withdrawal(s)");

    style.step("The monitor alerted the webhook as it happened");
    let alerts = tokio::task::spawn_blocking(move || {
        // The withdrawal and the revoked key; any other alert that came (the disk running
        // low, say) is shown too, but not waited for.
        let told = |hook: &Hook| {
            serde_json::from_slice::<Value>(&hook.body).is_ok_and(|alert| {
                ["withdrawal", "dead_key_used"].contains(&alert["rule"].as_str().unwrap_or(""))
            })
        };
        receiver.wait_for_kept(2, Duration::from_secs(10), told);
        let hooks = receiver.hooks();
        (receiver, hooks)
    })
    .await
    .context("waiting for the webhook")?
    .1;
    for hook in &alerts {
        let alert: Value = serde_json::from_slice(&hook.body).unwrap_or(Value::Null);
        let severity = alert["severity"].as_str().unwrap_or("?");
        let colour = if severity == "critical" {
            "1;31"
        } else {
            "1;33"
        };
        println!(
            "  {} {}",
            style.paint(colour, &format!("⚑ {severity:<8}")),
            alert["summary"].as_str().unwrap_or("?")
        );
    }

    // Stopped first, so that its last line comes before the log's section, not in it.
    server.stop();
    style.step("Every decision is in the tamper-evident audit log");
    let tail = keygate(&exe, home, &style, &["audit", "tail", "-n", "12"], None)?;
    print!("{tail}");
    println!(
        "  {}",
        style.paint(
            "2",
            "(numbered in the order written: an order's event before the order is sent, \
             reads and denials within 100 ms; the time is when each was made)"
        )
    );
    let verified = keygate(&exe, home, &style, &["audit", "verify"], None)?;
    print!("  {verified}");
    println!("\n{}", style.paint("1;32", "Demo finished."));
    Ok(())
}

fn report(style: &Style, what: &str, status: u16, body: &Value) {
    if (200..300).contains(&status) {
        style.ok(&format!("{what} → HTTP {status}"));
    } else {
        let msg = body["msg"].as_str().unwrap_or("");
        style.denied(&format!("{what} → HTTP {status} {msg}"));
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("temporary path is not UTF-8")
}

/// Runs `keygate --home HOME ARGS`, feeding `stdin`, and returns its standard output.
fn keygate(
    exe: &Path,
    home: &Path,
    style: &Style,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let home_text = home.to_str().unwrap_or("\0");
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.replace(home_text, "$KEYGATE_HOME"))
        .collect();
    let piped = if stdin.is_some() {
        "  (key and secret on stdin)"
    } else {
        ""
    };
    style.command(&format!("keygate {}{piped}", shown.join(" ")));
    let mut child = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running keygate {}", args.join(" ")))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .context("writing to keygate's stdin")?;
    }
    let out = child.wait_with_output().context("waiting for keygate")?;
    if !out.status.success() {
        bail!(
            "keygate {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `keygate serve` child process.
struct Server {
    child: Child,
    addr: String,
    stopped: bool,
}

impl Server {
    fn start(exe: &Path, home: &Path) -> anyhow::Result<Server> {
        let mut child = Command::new(exe)
            .arg("--home")
            .arg(home)
            .args(["serve", "--listen", "127.0.0.1:0"])
            // The alerts are shown as the webhook received them, not as serve logs them.
            .env("KEYGATE_LOG", "warn,keygate::alert=off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting keygate serve")?;
        let stdout = child.stdout.take().context("keygate serve has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading keygate serve's address")?;
        let addr = line
            .trim()
            .strip_prefix("keygate listening on http://")
            .and_then(|s| s.strip_suffix("/binance"))
            .map(str::to_owned);
        match addr {
            Some(addr) => Ok(Server {
                child,
                addr,
                stopped: false,
            }),
            _ => {
                let _ = child.kill();
                bail!("keygate serve did not start: {line:?}")
            }
        }
    }

    /// Asks the server to shut down (SIGTERM: it drains requests and flushes its audit
    /// log), then waits for it.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if !terminate(&self.child) {
            // No SIGTERM to send: the demo only needs it gone.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A trading bot that knows only its virtual key, signing like ccxt does.
struct Bot {
    http: reqwest::Client,
    base: String,
    api_key: String,
    secret: String,
}

impl Bot {
    async fn signed(&self, method: &str, path: &str, params: &str) -> anyhow::Result<(u16, Value)> {
        let timestamp = keygate_gateway::now_ms();
        let mut payload = format!("timestamp={timestamp}");
        if !params.is_empty() {
            payload = format!("{payload}&{params}");
        }
        payload.push_str("&recvWindow=10000");
        let signature = binance::hmac_signature(self.secret.as_bytes(), payload.as_bytes());
        let signed = format!("{payload}&signature={signature}");
        let method: reqwest::Method = method.parse()?;
        let url = format!("{}{path}", self.base);
        let request = if method == reqwest::Method::POST {
            self.http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(signed)
        } else {
            self.http.request(method, format!("{url}?{signed}"))
        };
        let response = request
            .header(binance::API_KEY_HEADER, &self.api_key)
            .send()
            .await?;
        let status = response.status().as_u16();
        let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        Ok((status, body))
    }
}

/// Sends SIGTERM to `child` (it drains and flushes its audit log); whether it was sent.
#[cfg(target_os = "linux")]
fn terminate(child: &Child) -> bool {
    use rustix::process::{kill_process, Pid, Signal};
    kill_process(Pid::from_child(child), Signal::TERM).is_ok()
}

/// Sends SIGTERM to `child` with the `kill` command; whether it was sent.
#[cfg(not(target_os = "linux"))]
fn terminate(child: &Child) -> bool {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
