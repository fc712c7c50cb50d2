//! The web app end to end: real replicas serving the built bundle, real
//! headless Chromium over WebDriver, users clicking and typing.
//!
//! Needs the bundle (`trunk build --release`) and Chromium with
//! chromedriver; `./scripts/test.sh` provides both. Screenshots of the main
//! screens land in `target/screenshots/`.

use std::time::{Duration, Instant};

use chat_tests::TestCluster;
use chat_tests::browser::{Browser, Chromedriver, web_bundle};
use chat_tests::chat_shared::client::{Config, native};
use nix::sys::signal::Signal;
use serde_json::json;

/// One browser test at a time: each runs a cluster and two Chromiums, and
/// the machine may have only two cores.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three replicas serving the web app, all live to each other.
async fn cluster(name: &str) -> TestCluster {
    let dist = web_bundle();
    let mut cluster = TestCluster::new(name, 3);
    for r in &mut cluster.replicas {
        r.extra_args = vec!["--static-dir".into(), dist.display().to_string()];
        r.spawn();
    }
    for r in &mut cluster.replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    cluster.converge(Duration::from_secs(30)).await;
    cluster
}

/// The replica the app says it is connected to.
/// A native client of the replica at `url` with a new account `name`
/// (password `<name>-password`), and the account's id.
async fn native_user(url: String, name: &str) -> (native::NativeClient, String) {
    let client = native::client(vec![url], Config::default());
    let id = client
        .create_account(name, &format!("{name}-password"))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
        .account
        .expect("account")
        .id;
    (client, id)
}

async fn connected_to(b: &Browser) -> u32 {
    b.wait("a connection to a replica", || async {
        let indicator = b.try_find("#connection[data-state=connected]").await?;
        let id: u32 = indicator.attr("data-server").await.ok()??.parse().ok()?;
        (id != 0).then_some(id)
    })
    .await
}

async fn register(b: &Browser, name: &str, password: &str) {
    b.click("#tab-register").await;
    b.fill("#auth-username", name).await;
    b.fill("#auth-password", password).await;
    b.click("#auth-submit").await;
    b.wait_text("#me-name", name).await;
}

async fn log_in(b: &Browser, name: &str, password: &str) {
    b.click("#tab-login").await;
    b.fill("#auth-username", name).await;
    b.fill("#auth-password", password).await;
    b.click("#auth-submit").await;
}

/// Waits until exactly `n` elements matching `css` have the text `text`.
async fn wait_count_text(b: &Browser, css: &str, text: &str, n: usize) {
    b.wait(&format!("{n} × `{css}` saying {text:?}"), || async {
        (b.count_text(css, text).await == n).then_some(())
    })
    .await
}

/// The status ("Sent", "Read") of the message saying `body`, if shown.
async fn status_of(b: &Browser, body: &str) -> serde_json::Value {
    b.js(
        "const m = [...document.querySelectorAll('li.msg')]\
            .find(e => e.querySelector('.body').textContent === arguments[0]);
         return m ? m.querySelector('.status').textContent : null;",
        vec![json!(body)],
    )
    .await
}

fn no_alerts(b: &Browser, alerts: &[String]) {
    assert!(
        alerts.is_empty(),
        "[{}] the app showed an error: {alerts:?}",
        b.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_live_delete_and_survive_a_replica_kill() {
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let mut cluster = cluster("browser-chat").await;
    let driver = Chromedriver::start().await;
    let ann = driver.browser("ann").await;
    let bob = driver.browser("bob").await;

    // Each opens a different replica and the app connects to it.
    ann.goto(&cluster.r(1).url()).await;
    bob.goto(&cluster.r(2).url()).await;
    assert_eq!(connected_to(&ann).await, 1);
    assert_eq!(connected_to(&bob).await, 2);
    ann.screenshot("01-login").await;

    register(&ann, "ann", "ann-password").await;
    register(&bob, "bob", "bob-password").await;

    // They find each other by wildcard.
    ann.click("#tab-people").await;
    ann.fill_and_enter("#people-search", "b?b").await;
    ann.find("li.account[data-username=bob]").await;
    assert_eq!(ann.count("li.account").await, 1, "b?b matches only bob");
    ann.screenshot("02-directory").await;
    bob.click("#tab-people").await;
    bob.fill_and_enter("#people-search", "*NN").await;
    bob.find("li.account[data-username=ann]").await;

    // Ann writes (Enter sends); the message arrives live at Bob's, unread.
    const HELLO: &str = "Hi Bob! This is Ann.";
    ann.click("li.account[data-username=bob] button").await;
    ann.wait_text("#peer-name", "bob").await;
    ann.fill_and_enter("#composer", HELLO).await;
    wait_count_text(&ann, "li.msg.mine:not(.pending) .body", HELLO, 1).await;
    bob.click("#tab-chats").await;
    bob.wait_text("li.conversation[data-peer=ann] .badge", "1")
        .await;
    bob.wait_text("#unread-total", "1").await;
    // The tab's title says so too, for whoever is in another tab.
    bob.wait_title("(1) Relay — chat").await;
    bob.screenshot("03-unread").await;

    // Opening it shows it and marks it read; Ann sees the read receipt.
    bob.click("li.conversation[data-peer=ann] button").await;
    wait_count_text(&bob, "li.msg .body", HELLO, 1).await;
    bob.wait_text("#unread-total", "0").await;
    bob.wait_title("Relay — chat").await;
    bob.wait_gone("li.conversation[data-peer=ann] .badge").await;
    ann.wait_text("li.msg.mine .status", "Read").await;

    // Bob answers; it arrives live in Ann's open conversation.
    const REPLY: &str = "Hello Ann, good to see you here.";
    bob.fill("#composer", REPLY).await;
    bob.click("#send").await;
    wait_count_text(&ann, "li.msg:not(.mine) .body", REPLY, 1).await;
    ann.screenshot("04-conversation").await;
    bob.screenshot("04-conversation-bob").await;

    // Ann deletes her message: it disappears for both of them.
    let id = ann
        .js(
            "return [...document.querySelectorAll('li.msg')]\
                .find(e => e.querySelector('.body').textContent === arguments[0]).dataset.id;",
            vec![json!(HELLO)],
        )
        .await;
    let id = id.as_str().expect("message id").to_string();
    ann.click("#select-mode").await;
    ann.click(&format!("li.msg[data-id='{id}'] input.select-msg"))
        .await;
    ann.wait_text("#delete-selected", "Delete (1)").await;
    ann.screenshot("05-select").await;
    ann.click("#delete-selected").await;
    ann.click("#confirm-delete").await;
    ann.wait_gone(&format!("li.msg[data-id='{id}']")).await;
    bob.wait_gone(&format!("li.msg[data-id='{id}']")).await;
    assert_eq!(bob.count_text("li.msg .body", REPLY).await, 1);
    no_alerts(&ann, &ann.alerts().await);
    no_alerts(&bob, &bob.alerts().await);

    // kill -9 the replica Ann uses, then send: the app moves to another
    // replica by itself, the message is delivered once, no error shows.
    const AFTER: &str = "Still here after the crash?";
    let victim = connected_to(&ann).await;
    ann.fill("#composer", AFTER).await;
    let killed = Instant::now();
    cluster.r(victim).kill9();
    ann.click("#send").await;
    ann.wait("the send after the kill to complete", || async {
        no_alerts(&ann, &ann.alerts().await);
        (ann.count_text("li.msg.mine:not(.pending) .body", AFTER)
            .await
            == 1)
            .then_some(())
    })
    .await;
    let failover = killed.elapsed();
    println!(
        "failover: kill -9 of replica {victim} -> send completed in the browser after {} ms",
        failover.as_millis()
    );
    assert!(
        failover < Duration::from_secs(1),
        "the send took {failover:?} after the kill; the target is under 1 s"
    );
    let now_on = connected_to(&ann).await;
    assert_ne!(now_on, victim);
    wait_count_text(&bob, "li.msg .body", AFTER, 1).await;
    // Nothing arrives twice, even a little later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ann.count_text("li.msg .body", AFTER).await, 1);
    assert_eq!(bob.count_text("li.msg .body", AFTER).await, 1);
    no_alerts(&ann, &ann.alerts().await);
    no_alerts(&bob, &bob.alerts().await);
    const ANSWER: &str = "Yes, loud and clear.";
    bob.fill("#composer", ANSWER).await;
    bob.click("#send").await;
    wait_count_text(&ann, "li.msg:not(.mine) .body", ANSWER, 1).await;
    ann.screenshot("06-after-failover").await;

    // The servers agree: one message, stored once.
    let survivor = cluster.r(now_on).url();
    let check = native::client(vec![survivor], Config::default());
    let me = check.login("ann", "ann-password").await.expect("login");
    let bob_id = check
        .list_accounts("bob", 0, "")
        .await
        .expect("list")
        .accounts[0]
        .id
        .clone();
    let history = check.get_history(&bob_id, 0, "").await.expect("history");
    let copies = history.messages.iter().filter(|m| m.body == AFTER).count();
    assert_eq!(copies, 1, "history: {:#?}", history.messages);
    assert!(history.messages.iter().all(|m| m.body != HELLO));
    let me_id = me.account.expect("account").id;

    // The servers panel shows the dead replica; switch by hand to the third.
    ann.click("#servers-btn").await;
    ann.find(&format!("li.server[data-id='{victim}'][data-state=down]"))
        .await;
    ann.find(&format!("li.server[data-id='{now_on}'] .pill"))
        .await;
    let third = (1..=3).find(|id| *id != victim && *id != now_on).unwrap();
    ann.find(&format!("li.server[data-id='{third}'][data-state=up]"))
        .await;
    ann.screenshot("07-servers").await;
    ann.click(&format!("li.server[data-id='{third}'] .use-server"))
        .await;
    ann.wait("the switch to the third replica", || async {
        (connected_to(&ann).await == third).then_some(())
    })
    .await;
    ann.click("#servers-close").await;

    // Live delivery follows the switch.
    const LAST: &str = "Messages still arrive live.";
    bob.fill("#composer", LAST).await;
    bob.click("#send").await;
    wait_count_text(&ann, "li.msg:not(.mine) .body", LAST, 1).await;
    no_alerts(&ann, &ann.alerts().await);

    // The replica in use hangs (SIGSTOP) with a send in flight: after its
    // deadline the app re-sends the same request elsewhere; when the hung
    // replica wakes up and handles the stale copy too, the message still
    // exists once.
    const HUNG: &str = "Sent while my server hung.";
    ann.fill("#composer", HUNG).await;
    cluster.r(third).signal(Signal::SIGSTOP);
    let stopped = Instant::now();
    ann.click("#send").await;
    ann.wait("the send to complete on another replica", || async {
        no_alerts(&ann, &ann.alerts().await);
        (ann.count_text("li.msg.mine:not(.pending) .body", HUNG)
            .await
            == 1)
            .then_some(())
    })
    .await;
    println!(
        "hung replica: send completed after {} ms (deadline {} ms)",
        stopped.elapsed().as_millis(),
        Config::default().call_timeout.as_millis()
    );
    assert_eq!(connected_to(&ann).await, now_on);
    wait_count_text(&bob, "li.msg .body", HUNG, 1).await;
    cluster.r(third).signal(Signal::SIGCONT);
    cluster.converge(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ann.count_text("li.msg .body", HUNG).await, 1);
    assert_eq!(bob.count_text("li.msg .body", HUNG).await, 1);
    for id in [now_on, third] {
        let replica = native::client(vec![cluster.r(id).url()], Config::default());
        replica.login("bob", "bob-password").await.expect("login");
        let history = replica.get_history(&me_id, 0, "").await.expect("history");
        let copies = history.messages.iter().filter(|m| m.body == HUNG).count();
        assert_eq!(copies, 1, "replica {id}: {:#?}", history.messages);
    }
    no_alerts(&ann, &ann.alerts().await);

    // Every replica down: the app says so, keeps retrying, and recovers
    // when one comes back.
    cluster.r(now_on).kill9();
    cluster.r(third).kill9();
    ann.find("#connection[data-state=offline]").await;
    bob.find("#connection[data-state=offline]").await;
    no_alerts(&ann, &ann.alerts().await);
    ann.screenshot("08-offline").await;
    cluster.r(third).start().await;
    ann.wait("a reconnection to the restarted replica", || async {
        (connected_to(&ann).await == third).then_some(())
    })
    .await;
    assert_eq!(connected_to(&bob).await, third);
    const BACK: &str = "We are back.";
    ann.fill("#composer", BACK).await;
    ann.click("#send").await;
    wait_count_text(&bob, "li.msg:not(.mine) .body", BACK, 1).await;
    no_alerts(&ann, &ann.alerts().await);
    no_alerts(&bob, &bob.alerts().await);

    ann.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_errors_unread_count_paging_and_deletion() {
    // The app pages 30 messages and 20 accounts at a time.
    const HISTORY: usize = 33;
    const PALS: usize = 21;
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let mut cluster = cluster("browser-accounts").await;
    let driver = Chromedriver::start().await;
    let carol = driver.browser("carol").await;
    carol.goto(&cluster.r(3).url()).await;
    assert_eq!(connected_to(&carol).await, 3);

    // Local checks before any request, then the server's verdict.
    carol.click("#tab-register").await;
    carol.fill("#auth-username", "c").await;
    carol.fill("#auth-password", "carol-password").await;
    carol.click("#auth-submit").await;
    carol.wait_text("#auth-error", "3 to 32 characters").await;
    register(&carol, "carol", "carol-password").await;
    carol.click("#logout").await;
    carol.find("#auth-submit").await;

    // Meanwhile Dave (a native client, on another replica) writes more than
    // a page of messages, and more than a page of people register.
    let dave = native::client(vec![cluster.r(1).url()], Config::default());
    dave.create_account("dave", "dave-password")
        .await
        .expect("dave");
    let carol_id = dave
        .list_accounts("carol", 0, "")
        .await
        .expect("list")
        .accounts[0]
        .id
        .clone();
    for i in 1..=HISTORY {
        dave.send_message(&carol_id, &format!("Message number {i}."))
            .await
            .expect("send");
    }
    let pals = native::client(vec![cluster.r(2).url()], Config::default());
    for i in 0..PALS {
        pals.create_account(&format!("pal-{i:02}"), "pal-password")
            .await
            .expect("pal");
    }

    carol.click("#tab-register").await;
    carol.fill("#auth-username", "Carol").await;
    carol.fill("#auth-password", "another-password").await;
    // The password can be shown while typed, and hidden again.
    carol.wait_attr("#auth-password", "type", "password").await;
    carol.click("#auth-show-password").await;
    carol.wait_attr("#auth-password", "type", "text").await;
    carol.click("#auth-show-password").await;
    carol.wait_attr("#auth-password", "type", "password").await;
    carol.click("#auth-submit").await;
    carol.wait_text("#auth-error", "already taken").await;

    log_in(&carol, "carol", "not-her-password").await;
    carol
        .wait_text("#auth-error", "Wrong username or password.")
        .await;
    carol.screenshot("09-login-error").await;

    // Logging in (in any case) tells her what is unread.
    log_in(&carol, "CAROL", "carol-password").await;
    let unread = HISTORY.to_string();
    carol
        .wait_text("#notice", &format!("You have {HISTORY} unread messages."))
        .await;
    carol.wait_text("#unread-total", &unread).await;
    carol
        .wait_text("li.conversation[data-peer=dave] .badge", &unread)
        .await;
    carol.screenshot("10-welcome-back").await;

    // History: the newest page first, older ones on demand; shown is read.
    carol.click("li.conversation[data-peer=dave] button").await;
    let newest = format!("Message number {HISTORY}.");
    wait_count_text(&carol, "li.msg .body", &newest, 1).await;
    assert_eq!(carol.count("li.msg").await, 30);
    // The day is said once, above the first message of the day loaded.
    assert_eq!(carol.count_text("li.day", "Today").await, 1);
    assert_eq!(carol.count("li.day").await, 1);
    // Only what was shown is read.
    let older = (HISTORY - 30).to_string();
    carol.wait_text("#unread-total", &older).await;
    carol.click("#load-older").await;
    wait_count_text(&carol, "li.msg .body", "Message number 1.", 1).await;
    assert_eq!(carol.count("li.msg").await, HISTORY);
    // Loading older messages of the same day moves the day's separator up
    // to the first of them.
    assert_eq!(carol.count("li.day").await, 1);
    let first = carol
        .js(
            "const t = document.querySelector('.thread');
             return [t.children[0].className, t.children[1].querySelector('.body').textContent];",
            vec![],
        )
        .await;
    assert_eq!(first, json!(["day", "Message number 1."]));
    // In the order they were sent, also those sent within one millisecond.
    let bodies = carol
        .js(
            "return [...document.querySelectorAll('.thread li.msg .body')].map(e => e.textContent);",
            vec![],
        )
        .await;
    let sent: Vec<String> = (1..=HISTORY)
        .map(|n| format!("Message number {n}."))
        .collect();
    assert_eq!(bodies, json!(sent));
    carol.wait_text("#unread-total", "0").await;
    carol.wait_gone("#load-older").await;
    carol.screenshot("11-history").await;

    // The directory pages too.
    carol.click("#tab-people").await;
    carol.fill_and_enter("#people-search", "pal-*").await;
    carol
        .wait("a first page of 20 accounts", || async {
            (carol.count("li.account").await == 20).then_some(())
        })
        .await;
    carol.click("#accounts-more").await;
    carol
        .wait("every account", || async {
            (carol.count("li.account").await == PALS).then_some(())
        })
        .await;
    carol.wait_gone("#accounts-more").await;

    // Changing the password: checked before sending, then by the server;
    // this tab carries on (after a reload too), her other device is logged
    // out saying why, and the old password opens nothing.
    let phone = driver.browser("carol-phone").await;
    phone.goto(&cluster.r(1).url()).await;
    log_in(&phone, "carol", "carol-password").await;
    phone.wait_text("#me-name", "carol").await;
    carol.click("#change-password").await;
    carol.fill("#current-password", "carol-password").await;
    carol.fill("#new-password", "carol-new-password").await;
    carol.fill("#repeat-password", "carol-new-passwort").await;
    carol.click("#confirm-change-password").await;
    carol.wait_text("#password-error", "differ").await;
    carol.fill("#repeat-password", "carol-new-password").await;
    carol.fill("#current-password", "not-her-password").await;
    carol.click("#confirm-change-password").await;
    carol.wait_text("#password-error", "incorrect").await;
    carol.screenshot("12-change-password").await;
    carol.fill("#current-password", "carol-password").await;
    carol.click("#confirm-change-password").await;
    carol
        .wait_text("#notice", "Your password has been changed.")
        .await;
    carol.wait_gone("#password-dialog").await;
    phone
        .wait_text("#notice", "the account's password was changed")
        .await;
    phone.find("#auth-submit").await;
    phone.screenshot("13-session-ended").await;
    log_in(&phone, "carol", "carol-password").await;
    phone
        .wait_text("#auth-error", "Wrong username or password.")
        .await;
    // Signing out the other devices, keeping the password: the phone (back
    // in with the new one) is logged out again, this tab carries on.
    log_in(&phone, "carol", "carol-new-password").await;
    phone.wait_text("#me-name", "carol").await;
    carol.click("#change-password").await;
    carol.click("#sign-out-others").await;
    carol.wait_text("#password-error", "current password").await;
    carol.fill("#current-password", "carol-new-password").await;
    carol.click("#sign-out-others").await;
    carol
        .wait_text("#notice", "Your other devices have been signed out.")
        .await;
    carol.wait_gone("#password-dialog").await;
    phone
        .wait_text("#notice", "another device signed it out")
        .await;
    phone.find("#auth-submit").await;
    phone.screenshot("13b-signed-out-by-another-device").await;
    log_in(&phone, "carol", "carol-new-password").await;
    phone.wait_text("#me-name", "carol").await;
    phone.close().await;
    carol.goto(&cluster.r(3).url()).await;
    carol.wait_text("#me-name", "carol").await;
    carol.click("#tab-people").await;
    carol.fill_and_enter("#people-search", "dave").await;
    carol
        .wait("dave in the directory, with the new session", || async {
            (carol.count("li.account").await == 1).then_some(())
        })
        .await;

    // Deleting the account needs the password.
    carol.click("#delete-account").await;
    carol.fill("#delete-password", "carol-password").await;
    carol.click("#confirm-delete-account").await;
    carol.find("#delete-error").await;
    carol.screenshot("14-delete-account").await;
    carol.fill("#delete-password", "carol-new-password").await;
    carol.click("#confirm-delete-account").await;
    carol
        .wait_text("#notice", "Your account has been deleted.")
        .await;
    log_in(&carol, "carol", "carol-new-password").await;
    carol.wait_text("#auth-error", "deleted").await;
    let listed = dave.list_accounts("carol", 0, "").await.expect("list");
    assert!(listed.accounts.is_empty(), "a deleted account is listed");
    carol.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_messages_stay_unread_and_reconnecting_keeps_what_was_loaded() {
    // More than a page of history (30) and two of people (20); the longest
    // username there can be, for the narrow layout.
    const HISTORY: usize = 40;
    const PALS: usize = 41;
    const ANN: &str = "ann-with-a-very-long-username-32";
    assert_eq!(
        ANN.chars().count(),
        chat_tests::chat_shared::limits::USERNAME_MAX_CHARS
    );
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let mut cluster = cluster("browser-unseen").await;

    // Ann (a native client) writes more than a page to Bob, and more than a
    // page of people register.
    let bob_native = native::client(vec![cluster.r(1).url()], Config::default());
    let bob_id = bob_native
        .create_account("bob", "bob-password")
        .await
        .expect("bob")
        .account
        .expect("account")
        .id;
    let ann_native = native::client(vec![cluster.r(1).url()], Config::default());
    ann_native
        .create_account(ANN, "ann-password")
        .await
        .expect("ann");
    for i in 1..=HISTORY {
        ann_native
            .send_message(&bob_id, &format!("Older message {i}."))
            .await
            .expect("send");
    }
    let pals = native::client(vec![cluster.r(3).url()], Config::default());
    for i in 0..PALS {
        pals.create_account(&format!("pal-{i:02}"), "pal-password")
            .await
            .expect("pal");
    }
    cluster.converge(Duration::from_secs(30)).await;

    let driver = Chromedriver::start().await;
    let bob = driver.browser("bob-unseen").await;
    bob.goto(&cluster.r(2).url()).await;
    assert_eq!(connected_to(&bob).await, 2);
    log_in(&bob, "bob", "bob-password").await;
    bob.wait_text("#notice", &format!("You have {HISTORY} unread messages."))
        .await;

    // Two clicks on "Show more people" before the first is answered list
    // each person once (also after the next page: the list behind the view
    // holds no duplicate either).
    bob.click("#tab-people").await;
    bob.fill_and_enter("#people-search", "pal-*").await;
    bob.wait("a first page of 20 accounts", || async {
        (bob.count("li.account").await == 20).then_some(())
    })
    .await;
    bob.js(
        "const more = document.querySelector('#accounts-more'); more.click(); more.click();",
        vec![],
    )
    .await;
    bob.find("#accounts[aria-busy=false]").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob.count("li.account").await, 40);
    bob.click("#accounts-more").await;
    bob.wait_gone("#accounts-more").await;
    bob.find("#accounts[aria-busy=false]").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob.count("li.account").await, PALS);
    for i in 0..PALS {
        let pal = format!("pal-{i:02}");
        assert_eq!(
            bob.count(&format!("li.account[data-username='{pal}']"))
                .await,
            1,
            "{pal}"
        );
    }

    // Bob reads the whole conversation, older page included.
    let ann_row = format!("li.conversation[data-peer='{ANN}']");
    bob.click("#tab-chats").await;
    bob.click(&format!("{ann_row} button")).await;
    wait_count_text(
        &bob,
        "li.msg .body",
        &format!("Older message {HISTORY}."),
        1,
    )
    .await;
    assert_eq!(bob.count("li.msg").await, 30);
    bob.wait_text("#unread-total", &(HISTORY - 30).to_string())
        .await;
    bob.click("#load-older").await;
    wait_count_text(&bob, "li.msg .body", "Older message 1.", 1).await;
    assert_eq!(bob.count("li.msg").await, HISTORY);
    bob.wait_text("#unread-total", "0").await;

    // Ann, in a browser, sees it all read.
    let ann = driver.browser("ann-unseen").await;
    ann.goto(&cluster.r(1).url()).await;
    log_in(&ann, ANN, "ann-password").await;
    ann.wait_text("#me-name", ANN).await;
    ann.click("li.conversation[data-peer=bob] button").await;
    wait_count_text(&ann, "li.msg.mine .status", "Read", 30).await;

    // Bob's page is hidden (another tab in front): a message arrives, is
    // shown, and stays unread -- for Bob's count and title, and for Ann.
    let set_visibility = |state: &str| {
        format!(
            "Object.defineProperty(document, 'visibilityState', \
                {{configurable: true, get: () => '{state}'}});
             document.dispatchEvent(new Event('visibilitychange', {{bubbles: true}}));"
        )
    };
    // Reading older messages, Bob is not at the bottom of the conversation:
    // a new message does not move the view.
    let scroll_top = "return document.querySelector('#messages').scrollTop;";
    let reading_at = bob.js(scroll_top, vec![]).await;
    let below = bob
        .js(
            "const m = document.querySelector('#messages');
             return m.scrollHeight - m.scrollTop - m.clientHeight;",
            vec![],
        )
        .await;
    assert!(below.as_f64().expect("a number") > 80.0, "{below}");
    bob.js(&set_visibility("hidden"), vec![]).await;
    const UNSEEN: &str = "Are you there, Bob?";
    ann.fill_and_enter("#composer", UNSEEN).await;
    wait_count_text(&ann, "li.msg.mine:not(.pending) .body", UNSEEN, 1).await;
    wait_count_text(&bob, "li.msg .body", UNSEEN, 1).await;
    bob.wait_text("#unread-total", "1").await;
    bob.wait_title("(1) Relay — chat").await;
    bob.wait_text(&format!("{ann_row} .badge"), "1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status_of(&ann, UNSEEN).await, json!("Sent"));
    assert_eq!(bob.text("#unread-total").await, "1");
    assert_eq!(bob.js(scroll_top, vec![]).await, reading_at);

    // Back in front: what is shown is read, and Ann sees it.
    bob.js(&set_visibility("visible"), vec![]).await;
    bob.wait_text("#unread-total", "0").await;
    bob.wait_title("Relay — chat").await;
    bob.wait_gone(&format!("{ann_row} .badge")).await;
    ann.wait("Ann to see her message read", || async {
        (status_of(&ann, UNSEEN).await == json!("Read")).then_some(())
    })
    .await;

    // Bob's replica dies: after the failover everything he had loaded is
    // still shown, in order, with what arrives next.
    cluster.converge(Duration::from_secs(30)).await;
    let victim = connected_to(&bob).await;
    cluster.r(victim).kill9();
    bob.wait("Bob's failover", || async {
        let now = bob
            .try_find("#connection[data-state=connected]")
            .await?
            .attr("data-server")
            .await
            .ok()??;
        (now != victim.to_string()).then_some(())
    })
    .await;
    const AFTER: &str = "Back after the failover.";
    let survivor = (1..=3).find(|id| *id != victim).unwrap();
    let ann_again = native::client(vec![cluster.r(survivor).url()], Config::default());
    ann_again.login(ANN, "ann-password").await.expect("login");
    ann_again.send_message(&bob_id, AFTER).await.expect("send");
    wait_count_text(&bob, "li.msg .body", AFTER, 1).await;
    let bodies = bob
        .js(
            "return [...document.querySelectorAll('.thread li.msg .body')].map(e => e.textContent);",
            vec![],
        )
        .await;
    let mut expected: Vec<String> = (1..=HISTORY)
        .map(|n| format!("Older message {n}."))
        .collect();
    expected.extend([UNSEEN.to_string(), AFTER.to_string()]);
    assert_eq!(bodies, json!(expected));

    // A dialog takes the focus, and Escape closes it wherever the focus is.
    bob.click("#change-password").await;
    bob.wait("the focus in the dialog", || async {
        let id = bob.js("return document.activeElement.id;", vec![]).await;
        (id == json!("current-password")).then_some(())
    })
    .await;
    bob.js(
        "document.activeElement.blur();
         document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape', bubbles: true}));",
        vec![],
    )
    .await;
    bob.wait_gone("#password-dialog").await;

    // On a phone-sized screen the long name ends in an ellipsis and every
    // button stays on screen.
    bob.client
        .set_window_size(375, 800)
        .await
        .expect("window size");
    bob.wait("a 375 px wide page", || async {
        let width = bob.js("return window.innerWidth;", vec![]).await;
        (width.as_u64()? <= 375).then_some(())
    })
    .await;
    let layout = bob
        .js(
            "const width = document.documentElement.clientWidth;
             const right = s => document.querySelector(s).getBoundingClientRect().right;
             const name = document.querySelector('#peer-name');
             return {
                 overflow: document.documentElement.scrollWidth > width,
                 off_screen: ['#servers-btn', '#logout', '#change-password', '#select-mode', '#send']
                     .filter(s => right(s) > width),
                 name_cut: name.scrollWidth > name.clientWidth,
             };",
            vec![],
        )
        .await;
    assert_eq!(
        layout,
        json!({"overflow": false, "off_screen": [], "name_cut": true})
    );
    bob.screenshot("15-narrow-conversation").await;
    // Selecting messages to delete: the buttons stay on screen too.
    bob.click("#select-mode").await;
    bob.click("li.msg input.select-msg").await;
    bob.click("#delete-selected").await;
    let off_screen = bob
        .js(
            "const width = document.documentElement.clientWidth;
             return ['#confirm-delete', '#select-mode']
                 .filter(s => document.querySelector(s).getBoundingClientRect().right > width);",
            vec![],
        )
        .await;
    assert_eq!(off_screen, json!([]));
    bob.screenshot("15b-narrow-delete").await;
    bob.click("#select-mode").await;
    bob.wait_gone("#confirm-delete").await;
    ann.client
        .set_window_size(375, 800)
        .await
        .expect("window size");
    ann.screenshot("16-narrow-conversation-ann").await;
    no_alerts(&ann, &ann.alerts().await);
    no_alerts(&bob, &bob.alerts().await);

    ann.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_goes_back_to_the_login_screen_saying_so() {
    // Sessions of one second. The app does nothing after signing up: the
    // live stream ends when the token does (1 s + the replicas' 5 s clock
    // leeway), and that alone must bring the login screen, saying why once.
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let dist = web_bundle();
    let mut cluster = TestCluster::new("browser-expiry", 1);
    let r = cluster.r(1);
    r.extra_args = [
        "--static-dir",
        &dist.display().to_string(),
        "--session-ttl-secs",
        "1",
    ]
    .map(String::from)
    .to_vec();
    r.spawn();
    r.wait_ready(Duration::from_secs(30)).await;
    let driver = Chromedriver::start().await;
    let ann = driver.browser("ann").await;
    ann.goto(&cluster.r(1).url()).await;
    register(&ann, "ann", "ann-password").await;
    let signed_up = Instant::now();
    ann.find("#auth-submit").await;
    let notice = ann
        .wait_text("#notice", "Session expired: log in again.")
        .await;
    // Said once (the notice's other line is its close button).
    assert_eq!(
        notice.lines().next(),
        Some("Session expired: log in again."),
        "{notice:?}"
    );
    assert!(
        signed_up.elapsed() >= Duration::from_secs(1),
        "logged out before the session expired"
    );
    ann.screenshot("17-session-expired").await;
    no_alerts(&ann, &ann.alerts().await);
    ann.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_fails_after_its_conversation_was_left_is_reported_in_a_notice() {
    // How the send is made to fail: the app's client core never gives up a
    // call by itself (`Config::offline_rounds` is `None` in the web app), so
    // replicas that do not answer only delay a send -- when they wake up it
    // completes. What fails a send for good is a rejection, and one that
    // holds on every replica: the recipient deleted his account
    // (FAILED_PRECONDITION). Her replica is SIGSTOPped just before she
    // sends, and Bob deletes his account on another one meanwhile, so no
    // live event can tell her app (its stream is on the stopped replica):
    // the send hangs ("Sending…") while she opens another conversation;
    // after its deadline (`call_timeout`, 5 s) the client re-sends it to
    // another replica, which refuses it.
    //
    // Then what the app makes of a deleted account: its row is marked, its
    // conversation stays readable with the box disabled, and the text that
    // could not be sent (or was typed) is kept to copy -- learnt from the
    // refused send after leaving the conversation, or from the live event
    // that says a partner's account was deleted (with the conversation
    // open, and not).
    const FROM_BOB: &str = "Hi Ann, Bob here.";
    const FROM_CAROL: &str = "Hi Ann, Carol here.";
    const LOST: &str = "Bob, are you still there?";
    const TO_CAROL: &str = "Carol, did you just leave?";
    const FROM_DAVE: &str = "Hi Ann, Dave here.";
    const DRAFT_TO_ERIN: &str = "Erin, one more thing: where do we meet?";
    const FROM_ERIN: &str = "Hi Ann, Erin here.";
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let mut cluster = cluster("browser-failed-send").await;
    let (ann_native, ann_id) = native_user(cluster.r(2).url(), "ann").await;
    let (bob_native, bob_id) = native_user(cluster.r(2).url(), "bob").await;
    bob_native
        .send_message(&ann_id, FROM_BOB)
        .await
        .expect("send");
    let (carol_native, _) = native_user(cluster.r(3).url(), "carol").await;
    carol_native
        .send_message(&ann_id, FROM_CAROL)
        .await
        .expect("send");
    let (dave_native, _) = native_user(cluster.r(3).url(), "dave").await;
    let (erin_native, _) = native_user(cluster.r(3).url(), "erin").await;
    cluster.converge(Duration::from_secs(30)).await;

    let driver = Chromedriver::start().await;
    let ann = driver.browser("ann-failed-send").await;
    ann.goto(&cluster.r(1).url()).await;
    assert_eq!(connected_to(&ann).await, 1);
    log_in(&ann, "ann", "ann-password").await;
    ann.wait_text("#me-name", "ann").await;
    ann.click("li.conversation[data-peer=bob] button").await;
    wait_count_text(&ann, "li.msg .body", FROM_BOB, 1).await;
    // Bob's message marked read: nothing of Ann's is under way any more.
    ann.wait_text("#unread-total", "1").await;

    ann.fill("#composer", LOST).await;
    cluster.r(1).signal(Signal::SIGSTOP);
    let sent = Instant::now();
    ann.click("#send").await;
    wait_count_text(&ann, "li.msg.pending .body", LOST, 1).await;
    ann.click("li.conversation[data-peer=carol] button").await;
    ann.wait_text("#peer-name", "carol").await;
    // Bob deletes his account on replica 2 (which writes the stopped
    // replica off after the relay deadline; 2 and 3 hold the deletion
    // well before the send's 5 s are up).
    bob_native
        .delete_account("bob-password")
        .await
        .expect("delete bob");
    let notice = ann
        .wait_text("#notice", "Your message to bob was not sent.")
        .await;
    println!(
        "failed send: reported {} ms after the click",
        sent.elapsed().as_millis()
    );
    // The notice names the recipient, says why (the server's sentence),
    // quotes the text and where it is kept; its other line is its close
    // button.
    assert_eq!(
        notice.lines().next(),
        Some(
            "Your message to bob was not sent. Account 'bob' has been deleted. \
             Its text, “Bob, are you still there?”, is kept in your conversation \
             with bob, to copy."
        ),
        "{notice:?}"
    );
    // The refusal told the app: Bob's row says his account is deleted.
    ann.wait_text("li.conversation.deleted[data-peer=bob] .tag", "deleted")
        .await;
    assert_eq!(ann.count("li.conversation.deleted").await, 1);
    assert_eq!(
        ann.find("#notice").await.attr("class").await.ok().flatten(),
        Some("notice warning".to_string())
    );
    // Carol's conversation is what is open, and it got neither the error
    // nor the text: no alert under its composer, an empty draft, no bubble.
    wait_count_text(&ann, "li.msg .body", FROM_CAROL, 1).await;
    ann.screenshot("18-failed-send-notice").await;
    let check_carol_untouched = || async {
        assert_eq!(ann.text("#peer-name").await, "carol");
        assert_eq!(ann.count("#send-error").await, 0);
        no_alerts(&ann, &ann.alerts().await);
        assert_eq!(
            ann.js("return document.querySelector('#composer').value;", vec![])
                .await,
            json!("")
        );
        assert_eq!(ann.count_text("li.msg .body", LOST).await, 0);
        assert_eq!(ann.count("li.msg.pending").await, 0);
        assert_eq!(ann.count("li.msg").await, 1);
    };
    check_carol_untouched().await;
    // The open conversation's row keeps its highlight under the pointer;
    // another row under it shows the hover colour, and the open one keeps
    // its highlight.
    hover(&ann, "li.conversation[data-peer=carol] > button").await;
    wait_background(
        &ann,
        "li.conversation.active[data-peer=carol] > button",
        Some(true),
        ACTIVE_ROW,
    )
    .await;
    hover(&ann, "li.conversation[data-peer=bob] > button").await;
    wait_background(
        &ann,
        "li.conversation[data-peer=bob] > button",
        Some(true),
        HOVERED_ROW,
    )
    .await;
    wait_background(
        &ann,
        "li.conversation.active[data-peer=carol] > button",
        Some(false),
        ACTIVE_ROW,
    )
    .await;

    // Ann's replica crashes and comes back. (Woken instead, it would
    // handle the stale copy of the send it holds before it hears of the
    // deletion -- a send concurrent with it, stored like any other.)
    // Nothing turns up late.
    cluster.r(1).kill9();
    cluster.r(1).start().await;
    cluster.converge(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_carol_untouched().await;
    // Nor is it stored: Ann's conversation with Bob holds only his message.
    let history = ann_native
        .get_history(&bob_id, 0, "")
        .await
        .expect("history");
    let bodies: Vec<&str> = history.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, [FROM_BOB]);

    // The notice stayed all along (nothing replaced it).
    assert_eq!(
        ann.text("#notice").await.lines().next(),
        notice.lines().next()
    );

    // Back in Bob's conversation: readable, saying the account is deleted,
    // the box disabled with a word why, and the lost text shown whole, to
    // copy or discard (not to edit: it cannot be sent). The text is shown
    // where the notice said: opening the conversation dismissed the notice
    // (the app renders no `#notice` then).
    ann.click("li.conversation[data-peer=bob] button").await;
    ann.wait_text("#peer-name", "bob").await;
    assert_eq!(ann.count("#notice").await, 0);
    ann.wait_text("#peer-status", "This account has been deleted")
        .await;
    wait_count_text(&ann, "li.msg .body", FROM_BOB, 1).await;
    check_deleted_peer(&ann, "bob", Some(LOST)).await;
    assert_eq!(ann.count_text("li.msg .body", LOST).await, 0);
    ann.screenshot("18b-deleted-peer").await;
    // Copy puts it on the clipboard (the page is on 127.0.0.1, where the
    // browser allows it).
    ann.click("#unsent-copy").await;
    ann.wait_text("#unsent-copy", "Copied").await;
    // On a phone-sized screen everything stays on screen too.
    ann.client
        .set_window_size(375, 800)
        .await
        .expect("window size");
    ann.wait("a 375 px wide page", || async {
        let width = ann.js("return window.innerWidth;", vec![]).await;
        (width.as_u64()? <= 375).then_some(())
    })
    .await;
    let layout = ann
        .js(
            "const width = document.documentElement.clientWidth;
             const right = s => document.querySelector(s).getBoundingClientRect().right;
             return {
                 overflow: document.documentElement.scrollWidth > width,
                 off_screen: ['#unsent-copy', '#unsent-discard', '#select-mode', '#send']
                     .filter(s => right(s) > width),
             };",
            vec![],
        )
        .await;
    assert_eq!(layout, json!({"overflow": false, "off_screen": []}));
    ann.js(
        "document.querySelector('#unsent').scrollIntoView({block: 'center'});",
        vec![],
    )
    .await;
    ann.screenshot("18c-narrow-deleted-peer").await;
    ann.client
        .set_window_size(1280, 800)
        .await
        .expect("window size");
    // Discarded, it is gone.
    ann.click("#unsent-discard").await;
    ann.wait_gone("#unsent").await;

    // Carol deletes her account while Ann has her conversation open and is
    // typing: a live event says so, and the conversation turns read-only
    // at once, keeping what Ann had typed.
    ann.click("li.conversation[data-peer=carol] button").await;
    ann.wait_text("#peer-name", "carol").await;
    wait_count_text(&ann, "li.msg .body", FROM_CAROL, 1).await;
    ann.fill("#composer", TO_CAROL).await;
    assert_eq!(ann.text("#peer-status").await, "Direct message");
    carol_native
        .delete_account("carol-password")
        .await
        .expect("delete carol");
    ann.wait_text("#peer-status", "This account has been deleted")
        .await;
    check_deleted_peer(&ann, "carol", Some(TO_CAROL)).await;
    ann.wait_text("li.conversation.deleted[data-peer=carol] .tag", "deleted")
        .await;
    assert_eq!(ann.count_text("li.msg .body", TO_CAROL).await, 0);
    assert_eq!(ann.count("li.msg.pending").await, 0);

    // Dave and Erin write; Ann has Erin's conversation open, with a draft,
    // when Dave deletes his account: his row is marked at once, Erin's
    // conversation is untouched; opened, Dave's is read-only.
    dave_native
        .send_message(&ann_id, FROM_DAVE)
        .await
        .expect("send");
    erin_native
        .send_message(&ann_id, FROM_ERIN)
        .await
        .expect("send");
    ann.click("li.conversation[data-peer=erin] button").await;
    wait_count_text(&ann, "li.msg .body", FROM_ERIN, 1).await;
    ann.fill("#composer", DRAFT_TO_ERIN).await;
    dave_native
        .delete_account("dave-password")
        .await
        .expect("delete dave");
    ann.wait_text("li.conversation.deleted[data-peer=dave] .tag", "deleted")
        .await;
    assert_eq!(ann.text("#peer-name").await, "erin");
    assert_eq!(ann.text("#peer-status").await, "Direct message");
    assert_eq!(
        ann.js(
            "const box = document.querySelector('#composer');
             return [box.value, box.disabled, !!document.querySelector('#unsent')];",
            vec![]
        )
        .await,
        json!([DRAFT_TO_ERIN, false, false])
    );
    ann.click("li.conversation[data-peer=dave] button").await;
    ann.wait_text("#peer-name", "dave").await;
    ann.wait_text("#peer-status", "This account has been deleted")
        .await;
    wait_count_text(&ann, "li.msg .body", FROM_DAVE, 1).await;
    check_deleted_peer(&ann, "dave", None).await;
    assert_eq!(ann.count("li.conversation.deleted").await, 3);
    ann.screenshot("18d-peer-deleted-live").await;
    no_alerts(&ann, &ann.alerts().await);
    ann.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_refused_for_another_reason_than_the_session_is_reopened_with_backoff() {
    // How the stream is made to fail: a replica lets one account hold
    // `SUBSCRIPTIONS_PER_ACCOUNT` live streams; Ann's "other devices" hold
    // them all, so the app's Subscribe is refused with RESOURCE_EXHAUSTED --
    // an answer the client core hands to the app (it is not a reason to
    // fail over) and not the end of the session. (Killing or restarting the
    // replica would not do: the core's subscription re-opens a broken
    // stream by itself, failing over and retrying forever, so the app's own
    // re-subscription would never be exercised.) One replica, so there is
    // nowhere else to go.
    //
    // Why an arrival proves the re-subscription: the app refreshes nothing
    // by itself but the server list (every 10 s) and the day labels; the
    // open conversation is (re)loaded only when the user opens it or loads
    // older messages, when the user sends, and on a live stream's
    // `Subscribed` or `Lagged` event. After the conversation is open the
    // test does nothing in the page, so a message sent by Bob meanwhile can
    // show only through a stream the app opened again by itself (and the
    // test checks it stays away while the stream is refused).
    use chat_tests::chat_shared::limits::SUBSCRIPTIONS_PER_ACCOUNT;
    use chat_tests::chat_shared::proto;
    const BEFORE: &str = "Hello Ann, before anything else.";
    const DURING: &str = "Sent while your live updates were paused.";
    const AFTER: &str = "And this one arrives live.";
    let _one_at_a_time = EXCLUSIVE.lock().await;
    let dist = web_bundle();
    let mut cluster = TestCluster::new("browser-live-retry", 1);
    let r = cluster.r(1);
    r.extra_args = vec!["--static-dir".into(), dist.display().to_string()];
    r.start().await;
    let url = cluster.r(1).url();
    let mut raw = cluster.r(1).client().await;
    let ann_auth = chat_tests::register(&mut raw, "ann", "ann-password").await;
    let ann_id = ann_auth.account.clone().expect("account").id;
    let bob = native::client(vec![url.clone()], Config::default());
    bob.create_account("bob", "bob-password")
        .await
        .expect("bob");
    bob.send_message(&ann_id, BEFORE).await.expect("send");
    let mut held = Vec::new();
    for _ in 0..SUBSCRIPTIONS_PER_ACCOUNT {
        let mut stream = raw
            .subscribe(chat_tests::authed(
                &ann_auth.token,
                proto::SubscribeRequest {},
            ))
            .await
            .expect("subscribe")
            .into_inner();
        let first = stream.message().await.expect("event").expect("an event");
        assert!(
            matches!(first.kind, Some(proto::event::Kind::Subscribed(_))),
            "{first:?}"
        );
        held.push(stream);
    }

    let driver = Chromedriver::start().await;
    let ann = driver.browser("ann-live-retry").await;
    ann.goto(&url).await;
    log_in(&ann, "ann", "ann-password").await;
    ann.wait_text("#me-name", "ann").await;
    // Refused: the app says so, with the server's reason, and when it tries
    // again.
    let notice = ann.wait_text("#notice", "Retrying in 5 s.").await;
    assert_eq!(
        notice.lines().next(),
        Some(
            format!(
                "Live updates paused: This account already has {SUBSCRIPTIONS_PER_ACCOUNT} \
                 live event streams open on this server (the most it may); close one \
                 (another tab or device) and try again. Retrying in 5 s."
            )
            .as_str()
        ),
        "{notice:?}"
    );
    // The connection indicator says so too, in amber: calls still reach
    // replica 1, new messages do not arrive by themselves.
    ann.wait_attr("#connection", "data-live", "paused").await;
    assert_eq!(
        ann.text("#connection").await,
        "Replica 1 · live updates paused"
    );
    assert_eq!(
        ann.find("#connection")
            .await
            .attr("class")
            .await
            .ok()
            .flatten(),
        Some("connection connected paused".to_string())
    );
    assert_eq!(
        ann.js(
            "return getComputedStyle(document.querySelector('#connection .dot')).backgroundColor;",
            vec![]
        )
        .await,
        json!(AMBER)
    );
    assert_eq!(connected_to(&ann).await, 1);
    ann.click("li.conversation[data-peer=bob] button").await;
    wait_count_text(&ann, "li.msg .body", BEFORE, 1).await;
    // It tries again 5 s later, is refused again, and waits twice as long.
    ann.wait_text("#notice", "Retrying in 10 s.").await;
    let paused_at = Instant::now();
    assert_eq!(
        ann.text("#connection").await,
        "Replica 1 · live updates paused"
    );
    ann.screenshot("19-live-updates-paused").await;

    // While no stream is open, Bob's message does not show: nothing else
    // brings it.
    bob.send_message(&ann_id, DURING).await.expect("send");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ann.count_text("li.msg .body", DURING).await, 0);

    // One of the other devices closes its stream: the next try (10 s after
    // the last) gets a stream, whose `Subscribed` reloads the open
    // conversation, and the notice goes. That is up to 10 s away, so wait
    // longer than `UI_TIMEOUT` allows.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ann.count_text("li.msg .body", DURING).await != 1 {
        assert!(
            Instant::now() < deadline,
            "the app did not subscribe again (notice: {:?}; screenshot: {})",
            ann.text("#notice").await,
            ann.screenshot("failed-ann-live-retry").await.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed = paused_at.elapsed();
    println!(
        "live stream re-opened {} ms after the second refusal was shown",
        resumed.as_millis()
    );
    assert!(
        resumed < Duration::from_secs(12),
        "re-opened after {resumed:?}; the backoff was 10 s"
    );
    ann.wait_gone("#notice").await;
    // The indicator is back to plain "Connected".
    ann.wait_attr("#connection", "data-live", "open").await;
    assert_eq!(ann.text("#connection").await, "Connected to replica 1");
    assert_eq!(
        ann.find("#connection")
            .await
            .attr("class")
            .await
            .ok()
            .flatten(),
        Some("connection connected".to_string())
    );
    // And the stream is live again: the next message arrives by itself.
    bob.send_message(&ann_id, AFTER).await.expect("send");
    wait_count_text(&ann, "li.msg:not(.mine) .body", AFTER, 1).await;
    let bodies = ann
        .js(
            "return [...document.querySelectorAll('.thread li.msg .body')].map(e => e.textContent);",
            vec![],
        )
        .await;
    assert_eq!(bodies, json!([BEFORE, DURING, AFTER]));
    ann.screenshot("20-live-updates-resumed").await;
    no_alerts(&ann, &ann.alerts().await);
    ann.close().await;
    drop(held);
}

/// Computed colours (`getComputedStyle`) of web/style.css: the open
/// conversation's row (`--primary-soft`), a row under the pointer
/// (`--surface-2`), the indicator's dot while live updates are paused.
const ACTIVE_ROW: &str = "rgb(232, 231, 251)";
const HOVERED_ROW: &str = "rgb(247, 248, 251)";
const AMBER: &str = "rgb(217, 119, 6)";

/// Moves the mouse pointer over the element matching `css`.
async fn hover(b: &Browser, css: &str) {
    use fantoccini::actions::{InputSource, MouseActions, PointerAction};
    let element = b.find(css).await;
    let moves = MouseActions::new("mouse".to_string()).then(PointerAction::MoveToElement {
        element,
        duration: None,
        x: 0.0,
        y: 0.0,
    });
    b.client
        .perform_actions(moves)
        .await
        .unwrap_or_else(|e| panic!("[{}] cannot hover `{css}`: {e}", b.name));
}

/// Waits until the element matching `css` is (`Some(true)`) or is not
/// under the pointer, and its background is `colour` (backgrounds change
/// with a short transition).
async fn wait_background(b: &Browser, css: &str, hovered: Option<bool>, colour: &str) {
    let wanted = json!({"hovered": hovered, "background": colour});
    b.wait(&format!("`{css}` to show {wanted}"), || async {
        let now = b
            .js(
                "const e = document.querySelector(arguments[0]);
                 return e && {
                     hovered: arguments[1] === null ? null : e.matches(':hover'),
                     background: getComputedStyle(e).backgroundColor,
                 };",
                vec![json!(css), json!(hovered)],
            )
            .await;
        (now == wanted).then_some(())
    })
    .await
}

/// The open conversation is with `peer`, whose account is deleted: the
/// history is there, the message box and Send are disabled and say why,
/// and `unsent` (if any) is shown whole to copy or discard, not to edit
/// (the box is empty).
async fn check_deleted_peer(b: &Browser, peer: &str, unsent: Option<&str>) {
    b.wait_text(
        "#composer-closed",
        &format!("You can no longer write to {peer}: the account was deleted."),
    )
    .await;
    let wanted = json!({
        "box_disabled": true,
        "box": "",
        "send_disabled": true,
        "unsent": unsent,
        "edit": false,
        "send_error": false,
    });
    // The kept text shows once the refusal has been handled.
    let deadline = Instant::now() + chat_tests::browser::UI_TIMEOUT;
    loop {
        let state = b
            .js(
                "const box = document.querySelector('#composer');
                 return {
                     box_disabled: box.disabled,
                     box: box.value,
                     send_disabled: document.querySelector('#send').disabled,
                     unsent: document.querySelector('#unsent-text')?.textContent ?? null,
                     edit: !!document.querySelector('#unsent-edit'),
                     send_error: !!document.querySelector('#send-error'),
                 };",
                vec![],
            )
            .await;
        if state == wanted || Instant::now() > deadline {
            assert_eq!(state, wanted, "[{}] the conversation with {peer}", b.name);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.count("li.msg").await > 0, "the history is still shown");
}
