//! The app's state and every user action, apart from how they are drawn.
//!
//! All network work goes through the client core (`chat_shared::client`),
//! which serialises calls and hides replica failures; so an action here is
//! "call, then update signals", and an error that reaches this module is
//! always one to show the user (never a dead replica: the connection
//! indicator reports those). The live subscription keeps the views fresh:
//! each event patches what is shown, and a (re)subscription or `lagged`
//! reloads it, since the server does not replay missed events. A reload
//! keeps what the user had paged in (all the conversations and older
//! messages shown), so reconnecting never loses their place; a stream that
//! fails for another reason than the session ending is re-opened after a
//! backoff, saying so.
//!
//! An account deleted by its owner is learnt of only from what the servers
//! return (there is no live event for it): a reload of the conversations or
//! of the open one, or a send refused because of it. Whatever says so marks
//! the account deleted everywhere it is shown ([`App::learn_account`]).
//!
//! Messages count as read only when seen: while the page is hidden (another
//! tab, a minimised window) they stay unread, and what the open
//! conversation shows is marked read when the page is visible again.

use std::collections::HashMap;
use std::time::Duration;

use chat_shared::client::{CallError, Connection, ServerInfo};
use chat_shared::limits::{CONVERSATIONS_PAGE_MAX, HISTORY_PAGE_MAX};
use chat_shared::proto::{self, event};
use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable};
use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::days::Day;
use crate::net::{self, WebClient};

pub const CONVERSATIONS_PAGE: u32 = 30;
pub const HISTORY_PAGE: u32 = 30;
pub const ACCOUNTS_PAGE: u32 = 20;
/// Most messages a reload fetches to keep what the user had paged in;
/// older ones load on demand again.
const RELOAD_MAX: usize = 2_000;
/// The pause before re-opening a failed live stream: doubling up to the
/// maximum, back to the first after an event arrives.
const LIVE_RETRY_FIRST: Duration = Duration::from_secs(5);
const LIVE_RETRY_MAX: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tab {
    Chats,
    People,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialog {
    Servers,
    ChangePassword,
    DeleteAccount,
}

/// A message on its way: shown at once, replaced by the stored message when
/// the send completes (however many replicas that took).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub key: u64,
    pub body: String,
}

/// A notice above the views: something happened that the user should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub warning: bool,
    /// The peer whose conversation shows what the notice is about (the
    /// text of a send to them that failed after the user left): opening
    /// that conversation dismisses the notice.
    pub about: Option<String>,
}

/// Why a send failed: the reason for the user, and whether it was that the
/// recipient's account has been deleted (so writing again is pointless).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    pub reason: String,
    pub recipient_deleted: bool,
}

/// Everything the views read and the actions write. `Copy`: signals are
/// handles.
#[derive(Clone, Copy)]
pub struct App {
    client: StoredValue<WebClient>,
    live: StoredValue<Option<AbortHandle>>,
    pub me: RwSignal<Option<proto::Account>>,
    pub connection: RwSignal<Connection>,
    pub servers: RwSignal<Vec<ServerInfo>>,
    pub unread: RwSignal<u64>,
    pub notice: RwSignal<Option<Notice>>,
    pub tab: RwSignal<Tab>,
    pub dialog: RwSignal<Option<Dialog>>,
    pub conversations: RwSignal<Vec<proto::Conversation>>,
    pub conversations_cursor: RwSignal<String>,
    pub peer: RwSignal<Option<proto::Account>>,
    /// The open conversation's peer: changes when another conversation
    /// opens, not when `peer` is updated (found deleted).
    pub peer_id: Memo<Option<String>>,
    /// The text of sends that failed and is not back in the message box
    /// yet, by peer id: it goes back when the conversation opens again, or
    /// is shown to copy where it cannot (`ui::Composer`).
    pub unsent: RwSignal<HashMap<String, String>>,
    /// The live stream was refused and is retried after a pause: new
    /// messages do not arrive by themselves meanwhile.
    pub live_paused: RwSignal<bool>,
    /// The open conversation, oldest first.
    pub messages: RwSignal<Vec<proto::Message>>,
    pub history_cursor: RwSignal<String>,
    pub pending: RwSignal<Vec<Pending>>,
    next_pending: StoredValue<u64>,
    /// Counts replacements of `messages`: an older page asked for before
    /// one (with a cursor that is gone) is dropped when it arrives.
    history_generation: StoredValue<u64>,
    /// Today and yesterday, kept current (day labels change at midnight,
    /// also in a tab left open).
    pub today: RwSignal<(Day, Day)>,
}

impl App {
    pub fn new() -> Self {
        let client = net::client();
        let peer = RwSignal::new(None::<proto::Account>);
        Self {
            connection: RwSignal::new(client.connection().get()),
            servers: RwSignal::new(client.servers().get()),
            client: StoredValue::new(client),
            live: StoredValue::new(None),
            me: RwSignal::new(None),
            unread: RwSignal::new(0),
            notice: RwSignal::new(None),
            tab: RwSignal::new(Tab::Chats),
            dialog: RwSignal::new(None),
            conversations: RwSignal::new(Vec::new()),
            conversations_cursor: RwSignal::new(String::new()),
            peer,
            peer_id: Memo::new(move |_| peer.with(|p| p.as_ref().map(|p| p.id.clone()))),
            unsent: RwSignal::new(HashMap::new()),
            live_paused: RwSignal::new(false),
            messages: RwSignal::new(Vec::new()),
            history_cursor: RwSignal::new(String::new()),
            pending: RwSignal::new(Vec::new()),
            next_pending: StoredValue::new(0),
            history_generation: StoredValue::new(0),
            today: RwSignal::new(Day::today()),
        }
    }

    pub fn client(&self) -> WebClient {
        self.client.get_value()
    }

    /// Mirrors the core's observable state into signals, keeps the server
    /// list fresh, and resumes a session saved before a reload.
    pub fn start(self) {
        let client = self.client();
        let mut connection = Box::pin(client.connection().stream());
        spawn_local(async move {
            while let Some(c) = connection.next().await {
                self.connection.set(c);
            }
        });
        let mut servers = Box::pin(client.servers().stream());
        spawn_local(async move {
            while let Some(s) = servers.next().await {
                self.servers.set(s);
            }
        });
        let refresher = client.clone();
        spawn_local(async move {
            let _ = refresher.refresh_servers().await;
            refresher
                .keep_servers_fresh(std::time::Duration::from_secs(10))
                .await;
        });
        spawn_local(async move {
            loop {
                TimeoutFuture::new(60_000).await;
                let today = Day::today();
                if self.today.get_untracked() != today {
                    self.today.set(today);
                }
            }
        });
        if let Some(session) = net::load_session() {
            let account = session.account.clone();
            client.set_session(Some(session));
            self.me.set(Some(account));
            self.begin_session();
        }
    }

    /// Whether the open conversation's account has been deleted (tracked).
    pub fn peer_deleted(&self) -> bool {
        self.peer.with(|p| p.as_ref().is_some_and(|p| p.deleted))
    }

    pub fn my_id(&self) -> String {
        self.me
            .with_untracked(|m| m.as_ref().map(|a| a.id.clone()))
            .unwrap_or_default()
    }

    /// A failed call's message for the user. A session that the servers no
    /// longer accept ends here, back at the login screen.
    pub fn explain(self, error: &CallError) -> String {
        let text = sentence(&error.to_string());
        if error.is_session_ended() && self.me.get_untracked().is_some() {
            // The server's sentence may say so already ("session expired:
            // log in again").
            let notice = if text.to_lowercase().contains("log in again") {
                text.clone()
            } else {
                format!("{text} Please log in again.")
            };
            self.end_session(Some(Notice {
                text: notice,
                warning: true,
                about: None,
            }));
        }
        text
    }

    // --- Session ----------------------------------------------------------

    pub async fn authenticate(
        self,
        username: String,
        password: String,
        register: bool,
    ) -> Result<(), String> {
        let client = self.client();
        let result = if register {
            client.create_account(&username, &password).await
        } else {
            client.login(&username, &password).await
        };
        let auth = result.map_err(|e| sentence(&e.to_string()))?;
        let account = auth.account.clone().unwrap_or_default();
        let text = match (register, auth.unread_count) {
            (true, _) => format!("Welcome, {}! Your account is ready.", account.username),
            (false, 0) => format!(
                "Welcome back, {}. You have no unread messages.",
                account.username
            ),
            (false, 1) => format!(
                "Welcome back, {}. You have 1 unread message.",
                account.username
            ),
            (false, n) => format!(
                "Welcome back, {}. You have {n} unread messages.",
                account.username
            ),
        };
        net::save_session(client.session().as_ref());
        self.unread.set(auth.unread_count);
        self.notice.set(Some(Notice {
            text,
            warning: false,
            about: None,
        }));
        self.me.set(Some(account));
        self.tab
            .set(if register { Tab::People } else { Tab::Chats });
        self.begin_session();
        Ok(())
    }

    fn begin_session(self) {
        self.start_live();
        spawn_local(async move { self.refresh_conversations().await });
    }

    /// Logs out (or reacts to a session the servers refused): forgets the
    /// token and everything shown.
    pub fn end_session(self, notice: Option<Notice>) {
        if let Some(handle) = self.live.get_value() {
            handle.abort();
        }
        self.live.set_value(None);
        self.client().logout();
        net::save_session(None);
        self.me.set(None);
        self.unread.set(0);
        self.conversations.set(Vec::new());
        self.conversations_cursor.set(String::new());
        self.peer.set(None);
        self.messages.set(Vec::new());
        self.pending.set(Vec::new());
        self.unsent.set(HashMap::new());
        self.live_paused.set(false);
        self.dialog.set(None);
        self.notice.set(notice);
    }

    /// Replaces the password; this tab carries on with the new session
    /// (kept for a reload), every other session of the account ends.
    pub async fn change_password(self, current: String, new: String) -> Result<(), String> {
        let result = self.client().change_password(&current, &new).await;
        // A wrong current password is PERMISSION_DENIED: the session stays.
        self.other_sessions_ended(
            result,
            "Your password has been changed. Every other session of your account has ended.",
        )
    }

    /// Ends every other session of the account; this one carries on.
    pub async fn sign_out_other_devices(self, password: String) -> Result<(), String> {
        let result = self.client().sign_out_other_devices(&password).await;
        self.other_sessions_ended(
            result,
            "Your other devices have been signed out. This one stays logged in, with the same password.",
        )
    }

    /// After a call that ended every other session and gave this tab a new
    /// one: keep it for a reload, close the dialog, say what happened.
    fn other_sessions_ended(self, result: Result<(), CallError>, text: &str) -> Result<(), String> {
        match result {
            Ok(()) => {
                net::save_session(self.client().session().as_ref());
                self.dialog.set(None);
                self.notice.set(Some(Notice {
                    text: text.into(),
                    warning: false,
                    about: None,
                }));
                Ok(())
            }
            Err(e) => Err(self.explain(&e)),
        }
    }

    pub async fn delete_account(self, password: String) -> Result<(), String> {
        match self.client().delete_account(&password).await {
            Ok(()) => {
                self.end_session(Some(Notice {
                    text: "Your account has been deleted.".into(),
                    warning: false,
                    about: None,
                }));
                Ok(())
            }
            // A wrong password is PERMISSION_DENIED: the session stays.
            Err(e) => Err(self.explain(&e)),
        }
    }

    // --- Live events ------------------------------------------------------

    /// Keeps a live stream open while the session lasts. A session that
    /// ended goes back to the login screen (`explain`); any other failure
    /// is said in a notice and the stream re-opens after a backoff.
    fn start_live(self) {
        let (handle, registration) = AbortHandle::new_pair();
        if let Some(old) = self.live.get_value() {
            old.abort();
        }
        self.live.set_value(Some(handle));
        self.live_paused.set(false);
        let live = async move {
            let mut pause = LIVE_RETRY_FIRST;
            let mut paused: Option<Notice> = None;
            loop {
                let mut events = self.client().subscribe();
                let error = loop {
                    match events.next().await {
                        Ok(event) => {
                            pause = LIVE_RETRY_FIRST;
                            if self.live_paused.get_untracked() {
                                self.live_paused.set(false);
                            }
                            if let Some(notice) = paused.take()
                                && self.notice.with_untracked(|n| n.as_ref() == Some(&notice))
                            {
                                self.notice.set(None);
                            }
                            self.on_event(event).await;
                        }
                        Err(e) => break e,
                    }
                };
                let reason = self.explain(&error);
                if error.is_session_ended() || self.me.with_untracked(Option::is_none) {
                    return;
                }
                let notice = Notice {
                    text: format!(
                        "Live updates paused: {reason} Retrying in {} s.",
                        pause.as_secs()
                    ),
                    warning: true,
                    about: None,
                };
                self.notice.set(Some(notice.clone()));
                self.live_paused.set(true);
                paused = Some(notice);
                TimeoutFuture::new(pause.as_millis() as u32).await;
                // Logging out aborts this task; this is for a session that
                // ended some other way meanwhile.
                if self.me.with_untracked(Option::is_none) {
                    return;
                }
                pause = (pause * 2).min(LIVE_RETRY_MAX);
            }
        };
        spawn_local(async move {
            let _ = Abortable::new(live, registration).await;
        });
    }

    async fn on_event(self, event: proto::Event) {
        let Some(kind) = event.kind else { return };
        match kind {
            // A new stream (first, or after a failover): whatever happened
            // in between was not delivered, so reload what is shown.
            event::Kind::Subscribed(s) => {
                self.unread.set(s.unread_count);
                self.reload_views().await;
            }
            event::Kind::Lagged(_) => self.reload_views().await,
            event::Kind::Message(m) => self.on_message(m).await,
            event::Kind::Deleted(d) => {
                self.unread.set(d.unread_count);
                self.messages
                    .update(|ms| ms.retain(|m| !d.message_ids.contains(&m.id)));
                self.refresh_conversations().await;
            }
            // Someone we talk with deleted their account: the row and (if
            // open) the conversation turn read-only at once.
            event::Kind::PeerDeleted(account) => self.learn_account(&account),
            event::Kind::Read(r) => {
                self.unread.set(r.unread_count);
                self.messages.update(|ms| {
                    for m in ms.iter_mut().filter(|m| r.message_ids.contains(&m.id)) {
                        m.read = true;
                    }
                });
                self.refresh_conversations().await;
            }
        }
    }

    async fn on_message(self, message: proto::Message) {
        let me = self.my_id();
        let incoming = message.recipient.as_ref().is_some_and(|a| a.id == me);
        let from = if incoming {
            &message.sender
        } else {
            &message.recipient
        };
        let other = from.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let open = self
            .peer
            .with_untracked(|p| p.as_ref().is_some_and(|p| p.id == other));
        if incoming && !message.read {
            self.unread.update(|n| *n += 1);
        }
        if let Some(account) = from {
            self.learn_account(account);
        }
        if open {
            upsert(self.messages, message);
            self.mark_shown_read().await;
        }
        self.refresh_conversations().await;
    }

    async fn reload_views(self) {
        self.refresh_conversations().await;
        if self.peer.get_untracked().is_some() {
            self.load_history(false).await;
        }
    }

    // --- Conversations ----------------------------------------------------

    /// Reloads the conversations (a conversation that became active moves
    /// to the front, so patching pages in place would miss it): as many as
    /// are shown, so that "Show more conversations" is not undone.
    pub async fn refresh_conversations(self) {
        let wanted = self
            .conversations
            .with_untracked(Vec::len)
            .max(CONVERSATIONS_PAGE as usize);
        let mut fetched = Vec::new();
        let mut cursor = String::new();
        loop {
            let size = (wanted - fetched.len()).min(CONVERSATIONS_PAGE_MAX as usize) as u32;
            match self.client().list_conversations(size, &cursor).await {
                Ok(page) => {
                    for c in page.conversations {
                        add_conversation(&mut fetched, c);
                    }
                    cursor = page.next_cursor;
                }
                Err(e) => {
                    self.explain(&e);
                    return;
                }
            }
            if cursor.is_empty() || fetched.len() >= wanted {
                break;
            }
        }
        let open = self.peer_id.get_untracked();
        let open_peer = fetched
            .iter()
            .filter_map(|c| c.peer.as_ref())
            .find(|p| Some(&p.id) == open.as_ref())
            .cloned();
        self.conversations.set(fetched);
        self.conversations_cursor.set(cursor);
        if let Some(account) = open_peer {
            self.learn_account(&account);
        }
    }

    /// Takes in what the servers said about an account: one found deleted
    /// is marked so in the open conversation and in the list (an account
    /// is never undeleted).
    pub fn learn_account(self, account: &proto::Account) {
        if !account.deleted {
            return;
        }
        if self
            .peer
            .with_untracked(|p| p.as_ref().is_some_and(|p| p.id == account.id && !p.deleted))
        {
            self.peer.update(|p| {
                if let Some(p) = p {
                    p.deleted = true;
                }
            });
        }
        let stale = |c: &proto::Conversation| {
            c.peer
                .as_ref()
                .is_some_and(|p| p.id == account.id && !p.deleted)
        };
        if self.conversations.with_untracked(|cs| cs.iter().any(stale)) {
            self.conversations.update(|cs| {
                for c in cs.iter_mut() {
                    if let Some(p) = c.peer.as_mut().filter(|p| p.id == account.id) {
                        p.deleted = true;
                    }
                }
            });
        }
    }

    pub async fn more_conversations(self) {
        let cursor = self.conversations_cursor.get_untracked();
        if cursor.is_empty() {
            return;
        }
        match self
            .client()
            .list_conversations(CONVERSATIONS_PAGE, &cursor)
            .await
        {
            Ok(page) => {
                self.conversations.update(|cs| {
                    for c in page.conversations {
                        add_conversation(cs, c);
                    }
                });
                self.conversations_cursor.set(page.next_cursor);
            }
            Err(e) => {
                self.explain(&e);
            }
        }
    }

    pub fn open_conversation(self, peer: proto::Account) {
        if self
            .peer
            .with_untracked(|p| p.as_ref().is_some_and(|p| p.id == peer.id))
        {
            return;
        }
        // A notice about a failed send to this peer: its text is shown
        // here now. Only that notice: not one that replaced it meanwhile.
        if self.notice.with_untracked(|n| {
            n.as_ref()
                .is_some_and(|n| n.about.as_deref() == Some(peer.id.as_str()))
        }) {
            self.notice.set(None);
        }
        self.peer.set(Some(peer));
        self.history_generation.update_value(|g| *g += 1);
        self.messages.set(Vec::new());
        self.history_cursor.set(String::new());
        self.pending.set(Vec::new());
        spawn_local(async move { self.load_history(false).await });
    }

    /// Loads the newest page of the open conversation, or (`older`) the page
    /// before the oldest one shown.
    ///
    /// Loading the newest again (a reload) fetches back to the oldest
    /// message shown, so that older pages the user loaded stay, and shows
    /// exactly what it fetched. An older page whose answer arrives after
    /// the list was replaced followed a cursor that is gone: it is dropped.
    pub async fn load_history(self, older: bool) {
        let Some(peer) = self.peer.get_untracked() else {
            return;
        };
        if older {
            self.load_older(&peer.id).await;
        } else {
            self.load_newest(&peer.id).await;
        }
    }

    async fn load_older(self, peer: &str) {
        let cursor = self.history_cursor.get_untracked();
        if cursor.is_empty() {
            return;
        }
        let generation = self.history_generation.get_value();
        match self.client().get_history(peer, HISTORY_PAGE, &cursor).await {
            Ok(page) => {
                // Another conversation, or a reload, replaced the list.
                if self.history_generation.get_value() != generation {
                    return;
                }
                for m in page.messages {
                    upsert(self.messages, m);
                }
                self.history_cursor.set(page.next_cursor);
                self.mark_shown_read().await;
            }
            Err(e) => {
                self.explain(&e);
            }
        }
    }

    async fn load_newest(self, peer: &str) {
        let (shown, oldest) = self
            .messages
            .with_untracked(|ms| (ms.len(), ms.first().map(|m| (m.id.clone(), m.sent_at_ms))));
        // Newest first, as the pages come.
        let mut fetched: Vec<proto::Message> = Vec::new();
        let mut cursor = String::new();
        loop {
            let size =
                (shown.saturating_sub(fetched.len()) as u32).clamp(HISTORY_PAGE, HISTORY_PAGE_MAX);
            let page = match self.client().get_history(peer, size, &cursor).await {
                Ok(page) => page,
                Err(e) => {
                    self.explain(&e);
                    return;
                }
            };
            // Back at the oldest shown (or past it, if it was deleted).
            let reached = oldest.as_ref().is_none_or(|(id, at)| {
                page.messages
                    .iter()
                    .any(|m| m.id == *id || m.sent_at_ms < *at)
            });
            fetched.extend(page.messages);
            cursor = page.next_cursor;
            if reached || cursor.is_empty() || fetched.len() >= RELOAD_MAX {
                break;
            }
        }
        // The user may have moved on while this was loading.
        if self
            .peer
            .with_untracked(|p| p.as_ref().map(|p| p.id.as_str()) != Some(peer))
        {
            return;
        }
        fetched.reverse();
        let account = fetched
            .iter()
            .flat_map(|m| [&m.sender, &m.recipient])
            .flatten()
            .find(|a| a.id == peer)
            .cloned();
        if let Some(account) = account {
            self.learn_account(&account);
        }
        self.history_generation.update_value(|g| *g += 1);
        self.messages.set(fetched);
        self.history_cursor.set(cursor);
        self.mark_shown_read().await;
    }

    /// Marks what the open conversation shows as read, if the user can see
    /// it (called again when the page becomes visible).
    pub async fn mark_shown_read(self) {
        if !page_visible() {
            return;
        }
        let me = self.my_id();
        let ids: Vec<String> = self.messages.with_untracked(|ms| {
            ms.iter()
                .filter(|m| !m.read && m.recipient.as_ref().is_some_and(|a| a.id == me))
                .map(|m| m.id.clone())
                .collect()
        });
        if ids.is_empty() {
            return;
        }
        match self.client().mark_read(ids.clone()).await {
            Ok(unread) => {
                self.unread.set(unread);
                self.messages.update(|ms| {
                    for m in ms.iter_mut().filter(|m| ids.contains(&m.id)) {
                        m.read = true;
                    }
                });
                let peer = self.peer.get_untracked().map(|p| p.id);
                self.conversations.update(|cs| {
                    for c in cs
                        .iter_mut()
                        .filter(|c| c.peer.as_ref().map(|p| p.id.clone()) == peer)
                    {
                        c.unread_count = 0;
                    }
                });
            }
            Err(e) => {
                self.explain(&e);
            }
        }
    }

    /// Sends a message to the open conversation. The bubble shows at once
    /// as pending; it becomes the stored message when the send completes.
    pub async fn send(self, body: String) -> Result<(), SendFailure> {
        let Some(peer) = self.peer.get_untracked() else {
            return Ok(());
        };
        let failure = |reason| SendFailure {
            reason,
            recipient_deleted: false,
        };
        chat_shared::validate::message_body(&body)
            .map_err(|e| failure(sentence(&e.to_string())))?;
        let key = self.next_pending.get_value();
        self.next_pending.set_value(key + 1);
        self.pending.update(|p| {
            p.push(Pending {
                key,
                body: body.clone(),
            })
        });
        let result = self.client().send_message(&peer.id, &body).await;
        self.pending.update(|p| p.retain(|x| x.key != key));
        match result {
            Ok(message) => {
                if self
                    .peer
                    .with_untracked(|p| p.as_ref().is_some_and(|p| p.id == peer.id))
                {
                    upsert(self.messages, message);
                }
                self.refresh_conversations().await;
                Ok(())
            }
            Err(e) => {
                let reason = self.explain(&e);
                // Refused for the state of what it names: a deleted
                // recipient -- or, rarely, a retried send whose message was
                // deleted since, hence the directory's word on it.
                let recipient_deleted =
                    e.is_failed_precondition() && self.confirm_deleted(&peer).await;
                Err(SendFailure {
                    reason,
                    recipient_deleted,
                })
            }
        }
    }

    /// Whether `account` has been deleted, as the directory says (it never
    /// lists a deleted account, and a retired username is never given
    /// again); if so, it is marked deleted wherever it is shown and the
    /// conversations are reloaded. Unknown (false) when the directory
    /// cannot be asked.
    async fn confirm_deleted(self, account: &proto::Account) -> bool {
        let listed = match self.client().list_accounts(&account.username, 1, "").await {
            Ok(page) => page.accounts.iter().any(|a| a.id == account.id),
            Err(e) => {
                self.explain(&e);
                return false;
            }
        };
        if listed {
            return false;
        }
        self.learn_account(&proto::Account {
            deleted: true,
            ..account.clone()
        });
        self.refresh_conversations().await;
        true
    }

    pub async fn delete_messages(self, ids: Vec<String>) -> Result<(), String> {
        match self.client().delete_messages(ids.clone()).await {
            Ok(unread) => {
                self.unread.set(unread);
                self.messages
                    .update(|ms| ms.retain(|m| !ids.contains(&m.id)));
                self.refresh_conversations().await;
                Ok(())
            }
            Err(e) => Err(self.explain(&e)),
        }
    }

    pub async fn switch_server(self, url: String) -> Result<(), String> {
        self.client()
            .switch_to(&url)
            .await
            .map(|_| ())
            .map_err(|e| sentence(&e.to_string()))
    }
}

/// Adds a conversation unless one with the same peer is there already
/// (pages read at different moments can overlap).
fn add_conversation(cs: &mut Vec<proto::Conversation>, c: proto::Conversation) {
    let peer = c.peer.as_ref().map(|p| p.id.clone());
    if !cs
        .iter()
        .any(|x| x.peer.as_ref().map(|p| p.id.clone()) == peer)
    {
        cs.push(c);
    }
}

/// Whether the user can see the page: not a background tab, not a
/// minimised window.
pub fn page_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
}

/// Inserts or replaces a message, keeping the list in the server's order
/// (`chat_shared::conversation`).
fn upsert(messages: RwSignal<Vec<proto::Message>>, message: proto::Message) {
    messages.update(|ms| chat_shared::conversation::upsert(ms, message));
}

/// "wrong username or password" → "Wrong username or password."
pub fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return "Something went wrong.".into(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}
