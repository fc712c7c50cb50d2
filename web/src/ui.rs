//! The screens. Components read the [`App`] from context and call its
//! actions; they hold only view-local state (form fields, selection).
//!
//! Accessibility: every input has a label (visible, or `sr-only` where the
//! placeholder says the same), forms submit with Enter, errors of the
//! user's own actions are `role="alert"`, and the connection indicator is a
//! polite live region. Dialogs take the focus when they open and close on
//! Escape wherever the focus is. Element ids double as stable hooks for the
//! browser tests.
//!
//! Components may be gone by the time an action they started completes (the
//! user logged out, or moved on): after an `await` they touch their own
//! signals only through the `try_` methods, since reading a disposed signal
//! panics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chat_shared::client::Connection;
use chat_shared::proto;
use chat_shared::validate;
use leptos::ev::{self, KeyboardEvent, SubmitEvent};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::{JsCast, JsValue};

use crate::app::{ACCOUNTS_PAGE, App, Dialog, Notice, Tab, page_visible, sentence};
use crate::days::{self, Day};
use crate::net;

/// The page's title, as in `index.html`.
const TITLE: &str = "Relay — chat";

fn use_app() -> App {
    expect_context::<App>()
}

#[component]
pub fn Root() -> impl IntoView {
    let app = App::new();
    provide_context(app);
    app.start();
    // The tab's title carries the unread count, so new mail shows from
    // another tab.
    Effect::new(move |_| {
        let unread = app.me.with(Option::is_some).then(|| app.unread.get());
        document().set_title(&match unread {
            Some(n) if n > 0 => format!("({n}) {TITLE}"),
            _ => TITLE.to_string(),
        });
    });
    // What arrived while the page was hidden is read once it is seen. (The
    // event is fired at the document and bubbles to the window.)
    _ = window_event_listener(ev::visibilitychange, move |_| {
        if page_visible() {
            spawn_local(app.mark_shown_read());
        }
    });
    view! {
        <div class="shell">
            <TopBar />
            <NoticeBar />
            <Show when=move || app.me.with(Option::is_some) fallback=AuthScreen>
                <div class="workspace">
                    <Sidebar />
                    <ConversationPane />
                </div>
            </Show>
            <Show when=move || app.dialog.get() == Some(Dialog::Servers)>
                <ServersPanel />
            </Show>
            <Show when=move || app.dialog.get() == Some(Dialog::ChangePassword)>
                <ChangePasswordDialog />
            </Show>
            <Show when=move || app.dialog.get() == Some(Dialog::DeleteAccount)>
                <DeleteAccountDialog />
            </Show>
        </div>
    }
}

// --- Top bar -------------------------------------------------------------

#[component]
fn TopBar() -> impl IntoView {
    let app = use_app();
    let logged_in = move || app.me.with(Option::is_some);
    let name = move || {
        app.me
            .with(|m| m.as_ref().map(|a| a.username.clone()).unwrap_or_default())
    };
    view! {
        <header class="topbar">
            <div class="brand">
                <span class="logo" aria-hidden="true">"✦"</span>
                <span>"Relay"</span>
            </div>
            <ConnectionIndicator />
            <div class="spacer"></div>
            <button
                id="servers-btn"
                class="ghost"
                on:click=move |_| app.dialog.set(Some(Dialog::Servers))
            >
                "Servers"
            </button>
            <Show when=logged_in>
                <div class="me">
                    <span class="avatar small" aria-hidden="true">{move || initial(&name())}</span>
                    <span id="me-name">{name}</span>
                    <span
                        id="unread-total"
                        class="badge"
                        class:zero=move || app.unread.get() == 0
                        aria-label=move || format!("{} unread", app.unread.get())
                    >
                        {move || app.unread.get()}
                    </span>
                </div>
                <button id="logout" class="ghost" on:click=move |_| app.end_session(None)>
                    "Log out"
                </button>
                <button
                    id="change-password"
                    class="ghost"
                    on:click=move |_| app.dialog.set(Some(Dialog::ChangePassword))
                >
                    "Password"
                </button>
                <button
                    id="delete-account"
                    class="ghost danger-text"
                    on:click=move |_| app.dialog.set(Some(Dialog::DeleteAccount))
                >
                    "Delete account"
                </button>
            </Show>
        </header>
    }
}

#[component]
fn ConnectionIndicator() -> impl IntoView {
    let app = use_app();
    // Calls still reach the replica while the live stream is refused (see
    // `App::start_live`), but new messages no longer arrive by themselves.
    let paused = move || {
        app.live_paused.get()
            && app.me.with(Option::is_some)
            && matches!(app.connection.get(), Connection::Connected(_))
    };
    let state = move || match app.connection.get() {
        Connection::Connecting => ("connecting", "Connecting…".to_string(), 0),
        Connection::Connected(s) if paused() => (
            "connected",
            format!("{} · live updates paused", capitalize(&s.name())),
            s.id,
        ),
        Connection::Connected(s) => ("connected", format!("Connected to {}", s.name()), s.id),
        Connection::FailingOver { from } => (
            "failing-over",
            format!(
                "{} stopped answering — switching…",
                capitalize(&from.name())
            ),
            0,
        ),
        Connection::Offline { retry_in, .. } => (
            "offline",
            format!(
                "Offline — no server is answering. Retrying in {} s",
                retry_in.as_secs_f32().ceil().max(1.0)
            ),
            0,
        ),
    };
    view! {
        <div
            id="connection"
            class=move || {
                format!("connection {}{}", state().0, if paused() { " paused" } else { "" })
            }
            data-state=move || state().0
            data-live=move || if paused() { "paused" } else { "open" }
            data-server=move || state().2.to_string()
            title=move || {
                paused().then_some(
                    "Connected, but new messages do not show by themselves until live updates resume.",
                )
            }
            role="status"
            aria-live="polite"
        >
            <span class="dot" aria-hidden="true"></span>
            <span>{move || state().1}</span>
        </div>
    }
}

#[component]
fn NoticeBar() -> impl IntoView {
    let app = use_app();
    move || {
        app.notice.get().map(|Notice { text, warning, .. }| {
            view! {
                <div class="notice" class:warning=warning id="notice" role="status">
                    <span>{text}</span>
                    <button
                        class="icon"
                        aria-label="Dismiss"
                        on:click=move |_| app.notice.set(None)
                    >
                        "×"
                    </button>
                </div>
            }
        })
    }
}

// --- Log in / register ---------------------------------------------------

#[component]
fn AuthScreen() -> impl IntoView {
    let app = use_app();
    let register = RwSignal::new(false);
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let show_password = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (name, pass, new) = (
            username.get_untracked().trim().to_string(),
            password.get_untracked(),
            register.get_untracked(),
        );
        let checked = if new {
            validate::username(&name).and_then(|()| validate::password(&pass))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            error.set(Some(sentence(&e.to_string())));
            return;
        }
        if name.is_empty() || pass.is_empty() {
            error.set(Some("Enter your username and password.".into()));
            return;
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            let result = app.authenticate(name, pass, new).await;
            busy.set(false);
            match result {
                Ok(()) => password.set(String::new()),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let switch_to = move |new: bool| {
        register.set(new);
        error.set(None);
    };
    view! {
        <main class="auth">
            <div class="auth-card">
                <h1>{move || if register.get() { "Create your account" } else { "Welcome back" }}</h1>
                <p class="muted">
                    "Direct messages that keep flowing when a server goes down."
                </p>
                <div class="segmented" role="tablist" aria-label="Log in or create an account">
                    <button
                        type="button"
                        id="tab-login"
                        role="tab"
                        aria-selected=move || (!register.get()).to_string()
                        class:active=move || !register.get()
                        on:click=move |_| switch_to(false)
                    >
                        "Log in"
                    </button>
                    <button
                        type="button"
                        id="tab-register"
                        role="tab"
                        aria-selected=move || register.get().to_string()
                        class:active=move || register.get()
                        on:click=move |_| switch_to(true)
                    >
                        "Create account"
                    </button>
                </div>
                <form on:submit=submit novalidate>
                    <label for="auth-username">"Username"</label>
                    <input
                        id="auth-username"
                        type="text"
                        autocomplete="username"
                        autocapitalize="none"
                        spellcheck="false"
                        aria-describedby="auth-username-hint"
                        bind:value=username
                    />
                    <p class="hint" id="auth-username-hint">
                        {move || {
                            if register.get() {
                                "3–32 characters: letters, digits, _ . - (starting with a letter or digit)."
                            } else {
                                "Not case-sensitive."
                            }
                        }}
                    </p>
                    <label for="auth-password">"Password"</label>
                    <input
                        id="auth-password"
                        type=move || if show_password.get() { "text" } else { "password" }
                        autocomplete=move || {
                            if register.get() { "new-password" } else { "current-password" }
                        }
                        bind:value=password
                    />
                    <label class="check">
                        <input type="checkbox" id="auth-show-password" bind:checked=show_password />
                        "Show password"
                    </label>
                    <Show when=move || register.get()>
                        <p class="hint">"At least 8 characters."</p>
                    </Show>
                    {move || {
                        error
                            .get()
                            .map(|e| view! { <p class="error" id="auth-error" role="alert">{e}</p> })
                    }}
                    <button type="submit" id="auth-submit" class="primary wide" disabled=busy>
                        {move || match (busy.get(), register.get()) {
                            (true, _) => "Please wait…",
                            (false, true) => "Create account",
                            (false, false) => "Log in",
                        }}
                    </button>
                </form>
            </div>
        </main>
    }
}

// --- Sidebar: conversations and people -----------------------------------

#[component]
fn Sidebar() -> impl IntoView {
    let app = use_app();
    let tab = app.tab;
    view! {
        <aside class="sidebar" aria-label="Conversations and people">
            <div class="segmented" role="tablist">
                <button
                    id="tab-chats"
                    role="tab"
                    aria-selected=move || (tab.get() == Tab::Chats).to_string()
                    class:active=move || tab.get() == Tab::Chats
                    on:click=move |_| tab.set(Tab::Chats)
                >
                    "Chats"
                </button>
                <button
                    id="tab-people"
                    role="tab"
                    aria-selected=move || (tab.get() == Tab::People).to_string()
                    class:active=move || tab.get() == Tab::People
                    on:click=move |_| tab.set(Tab::People)
                >
                    "People"
                </button>
            </div>
            <Show when=move || tab.get() == Tab::Chats fallback=People>
                <Conversations />
            </Show>
        </aside>
    }
}

#[component]
fn Conversations() -> impl IntoView {
    let app = use_app();
    let open_id = move || app.peer_id.get();
    view! {
        <Show
            when=move || app.conversations.with(|c| !c.is_empty())
            fallback=|| {
                view! {
                    <p class="empty small">
                        "No conversations yet. Find someone under People to start one."
                    </p>
                }
            }
        >
            <ul class="list" id="conversations">
                <For
                    each=move || app.conversations.get()
                    key=|c| {
                        (
                            c.peer.as_ref().map(|p| (p.id.clone(), p.deleted)),
                            c.unread_count,
                            c.message_count,
                            c.last_message.as_ref().map(|m| m.id.clone()),
                        )
                    }
                    let:c
                >
                    {
                        let peer = c.peer.clone().unwrap_or_default();
                        let peer_id = peer.id.clone();
                        let last = c.last_message.clone().unwrap_or_default();
                        let mine = last.sender.as_ref().is_some_and(|s| s.id == app.my_id());
                        let preview = if mine { format!("You: {}", last.body) } else { last.body.clone() };
                        let unread = c.unread_count;
                        let sent = last.sent_at_ms;
                        let name = peer.username.clone();
                        let deleted = peer.deleted;
                        view! {
                            <li
                                class="conversation"
                                class:active=move || open_id().as_deref() == Some(peer_id.as_str())
                                class:deleted=deleted
                                data-peer=name.clone()
                            >
                                <button on:click=move |_| app.open_conversation(peer.clone())>
                                    <span class="avatar" aria-hidden="true">{initial(&name)}</span>
                                    <span class="row-main">
                                        <span class="row-title">
                                            {name.clone()}
                                            {deleted.then(|| view! { <span class="tag">"deleted"</span> })}
                                        </span>
                                        <span class="row-sub">{preview}</span>
                                    </span>
                                    <span class="row-meta">
                                        <time title=full_date(sent)>{move || clock(sent, app.today.get())}</time>
                                        {(unread > 0).then(|| view! {
                                            <span class="badge" aria-label=format!("{unread} unread")>{unread}</span>
                                        })}
                                    </span>
                                </button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </Show>
        <Show when=move || app.conversations_cursor.with(|c| !c.is_empty())>
            <button
                class="link more"
                on:click=move |_| spawn_local(async move { app.more_conversations().await })
            >
                "Show more conversations"
            </button>
        </Show>
    }
}

#[component]
fn People() -> impl IntoView {
    let app = use_app();
    let pattern = RwSignal::new(String::new());
    let accounts = RwSignal::new(Vec::<proto::Account>::new());
    let cursor = RwSignal::new(String::new());
    let searched = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // Plain text means "starting with"; `*` and `?` are wildcards.
    let search = move |more: bool| {
        // A second "Show more" before the first answered would ask for the
        // same page again.
        if more && busy.get_untracked() {
            return;
        }
        let typed = pattern.get_untracked().trim().to_string();
        let wanted = if more {
            searched.get_untracked()
        } else if typed.is_empty() || typed.contains(['*', '?']) {
            typed
        } else {
            format!("{typed}*")
        };
        if let Err(e) = validate::pattern(&wanted) {
            error.set(Some(sentence(&e.to_string())));
            return;
        }
        error.set(None);
        busy.set(true);
        let after = if more {
            cursor.get_untracked()
        } else {
            String::new()
        };
        spawn_local(async move {
            let result = app
                .client()
                .list_accounts(&wanted, ACCOUNTS_PAGE, &after)
                .await;
            busy.set(false);
            match result {
                Ok(page) => {
                    if more {
                        accounts.update(|a| {
                            for account in page.accounts {
                                if !a.iter().any(|x| x.id == account.id) {
                                    a.push(account);
                                }
                            }
                        });
                    } else {
                        accounts.set(page.accounts);
                    }
                    cursor.set(page.next_cursor);
                    searched.set(wanted);
                }
                Err(e) => error.set(Some(app.explain(&e))),
            }
        });
    };
    search(false);
    let me = app.my_id();
    view! {
        <form
            class="search"
            role="search"
            on:submit=move |ev: SubmitEvent| {
                ev.prevent_default();
                search(false);
            }
        >
            <label for="people-search" class="sr-only">"Search people"</label>
            <input
                id="people-search"
                type="search"
                placeholder="Search people: ann, an*, ?ob"
                autocapitalize="none"
                spellcheck="false"
                bind:value=pattern
            />
            <button type="submit" id="people-search-btn" class="primary">"Search"</button>
        </form>
        {move || error.get().map(|e| view! { <p class="error small" role="alert">{e}</p> })}
        <ul class="list" id="accounts" aria-busy=move || busy.get().to_string()>
            <For each=move || accounts.get() key=|a| a.id.clone() let:a>
                {
                    let is_me = a.id == me;
                    let name = a.username.clone();
                    view! {
                        <li class="account" data-username=name.clone()>
                            <button disabled=is_me on:click=move |_| app.open_conversation(a.clone())>
                                <span class="avatar" aria-hidden="true">{initial(&name)}</span>
                                <span class="row-main">
                                    <span class="row-title">{name.clone()}</span>
                                    <span class="row-sub">
                                        {if is_me { "This is you" } else { "Send a message" }}
                                    </span>
                                </span>
                            </button>
                        </li>
                    }
                }
            </For>
        </ul>
        <Show when=move || !busy.get() && accounts.with(Vec::is_empty) && error.with(Option::is_none)>
            <p class="empty small">"Nobody matches that search."</p>
        </Show>
        <Show when=move || cursor.with(|c| !c.is_empty())>
            <button class="link more" id="accounts-more" disabled=busy on:click=move |_| search(true)>
                "Show more people"
            </button>
        </Show>
    }
}

// --- The open conversation -----------------------------------------------

#[component]
fn ConversationPane() -> impl IntoView {
    let app = use_app();
    view! {
        <section class="pane" aria-label="Conversation">
            <Show
                when=move || app.peer.with(Option::is_some)
                fallback=|| {
                    view! {
                        <div class="empty big">
                            <span class="logo big" aria-hidden="true">"✦"</span>
                            <p>"Pick a conversation, or find someone under People."</p>
                        </div>
                    }
                }
            >
                <ConversationView />
            </Show>
        </section>
    }
}

#[component]
fn ConversationView() -> impl IntoView {
    let app = use_app();
    let selecting = RwSignal::new(false);
    let selected = RwSignal::new(Vec::<String>::new());
    let confirming = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let scroller = NodeRef::<leptos::html::Div>::new();

    // Whether the view is at (or near) the bottom, as of the last scroll.
    let at_bottom = StoredValue::new(true);

    let peer = move || app.peer.get().unwrap_or_default();
    // Leaving the conversation drops the selection.
    Effect::new(move |_| {
        app.peer_id.track();
        selecting.set(false);
        selected.set(Vec::new());
        confirming.set(false);
        at_bottom.set_value(true);
    });
    // Follow the newest message: only when it changes (not when older ones
    // are loaded above), and only if the view was at the bottom already or
    // it is the user's own message being sent (not while they read older
    // ones).
    let newest = Memo::new(move |_| {
        (
            app.messages.with(|m| m.last().map(|m| m.id.clone())),
            app.pending.with(Vec::len),
        )
    });
    Effect::new(move |before: Option<(Option<String>, usize)>| {
        let now = newest.get();
        let sending = before.is_some_and(|(_, pending)| now.1 > pending);
        if let Some(el) = scroller.get()
            && (sending || at_bottom.get_value())
        {
            el.set_scroll_top(el.scroll_height());
        }
        now
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            let below = el.scroll_height() - el.scroll_top() - el.client_height();
            at_bottom.set_value(below <= 80);
        }
    };
    // Loading older messages keeps the view where it was.
    let load_older = move |_| {
        let from_bottom = scroller
            .get_untracked()
            .map(|el| el.scroll_height() - el.scroll_top());
        spawn_local(async move {
            app.load_history(true).await;
            request_animation_frame(move || {
                if let (Some(Some(el)), Some(from_bottom)) =
                    (scroller.try_get_untracked(), from_bottom)
                {
                    el.set_scroll_top(el.scroll_height() - from_bottom);
                }
            });
        });
    };

    let delete = move |_| {
        let ids = selected.get_untracked();
        if ids.is_empty() {
            return;
        }
        spawn_local(async move {
            match app.delete_messages(ids).await {
                Ok(()) => {
                    error.set(None);
                    selected.set(Vec::new());
                    selecting.set(false);
                }
                Err(e) => error.set(Some(e)),
            }
            confirming.set(false);
        });
    };
    let me = app.my_id();

    view! {
        <header class="pane-header">
            <span class="avatar" aria-hidden="true">{move || initial(&peer().username)}</span>
            <div class="pane-title">
                <h2 id="peer-name">{move || peer().username}</h2>
                <span id="peer-status" class="muted small" class:gone=move || peer().deleted>
                    {move || if peer().deleted { "This account has been deleted" } else { "Direct message" }}
                </span>
            </div>
            <Show when=move || selecting.get()>
                <Show
                    when=move || confirming.get()
                    fallback=move || {
                        view! {
                            <button
                                id="delete-selected"
                                class="danger"
                                disabled=move || selected.with(Vec::is_empty)
                                on:click=move |_| confirming.set(true)
                            >
                                {move || format!("Delete ({})", selected.with(Vec::len))}
                            </button>
                        }
                    }
                >
                    <span class="confirm-text">"Delete for both of you?"</span>
                    <button id="confirm-delete" class="danger" on:click=delete>
                        "Delete"
                    </button>
                    <button class="ghost" on:click=move |_| confirming.set(false)>
                        "Keep"
                    </button>
                </Show>
            </Show>
            <button
                id="select-mode"
                class="ghost"
                aria-pressed=move || selecting.get().to_string()
                on:click=move |_| {
                    selecting.update(|s| *s = !*s);
                    selected.set(Vec::new());
                    confirming.set(false);
                }
            >
                {move || if selecting.get() { "Cancel" } else { "Select" }}
            </button>
        </header>
        {move || error.get().map(|e| view! { <p class="error banner" role="alert">{e}</p> })}
        <div class="messages" id="messages" node_ref=scroller on:scroll=on_scroll>
            <Show when=move || app.history_cursor.with(|c| !c.is_empty())>
                <button
                    id="load-older"
                    class="link older"
                    on:click=load_older
                >
                    "Load older messages"
                </button>
            </Show>
            <Show when=move || app.messages.with(Vec::is_empty) && app.pending.with(Vec::is_empty)>
                <p class="empty small">"No messages yet. Say hello!"</p>
            </Show>
            <ul class="thread">
                <For each=move || app.messages.get() key=|m| (m.id.clone(), m.read) let:m>
                    {
                        let mine = m.sender.as_ref().is_some_and(|s| s.id == me);
                        let id = m.id.clone();
                        let toggle_id = id.clone();
                        let checked_id = id.clone();
                        let is_selected = Signal::derive(move || selected.with(|s| s.contains(&checked_id)));
                        let status = if !mine { "" } else if m.read { "Read" } else { "Sent" };
                        // The first message of a day (of those loaded) says
                        // which day it is; loading older ones moves that up.
                        let sent = m.sent_at_ms;
                        let day = Day::of(sent);
                        let first_id = id.clone();
                        let starts_day = Memo::new(move |_| {
                            app.messages.with(|ms| {
                                let at = ms.iter().position(|x| x.id == first_id);
                                at.is_some_and(|i| i == 0 || Day::of(ms[i - 1].sent_at_ms) != day)
                            })
                        });
                        view! {
                            <Show when=move || starts_day.get()>
                                <li class="day" role="separator">
                                    {move || {
                                        let (today, yesterday) = app.today.get();
                                        days::label(day, today, yesterday)
                                    }}
                                </li>
                            </Show>
                            <li class="msg" class:mine=mine class:selected=is_selected data-id=id>
                                <Show when=move || selecting.get()>
                                    <input
                                        type="checkbox"
                                        class="select-msg"
                                        aria-label="Select message"
                                        prop:checked=is_selected
                                        on:change={
                                            let toggle_id = toggle_id.clone();
                                            move |_| {
                                                let id = toggle_id.clone();
                                                selected.update(|s| {
                                                    if let Some(i) = s.iter().position(|x| *x == id) {
                                                        s.remove(i);
                                                    } else {
                                                        s.push(id);
                                                    }
                                                });
                                            }
                                        }
                                    />
                                </Show>
                                <div class="bubble">
                                    <p class="body">{m.body.clone()}</p>
                                    <span class="meta">
                                        <time title=full_date(sent)>{time_of_day(sent)}</time>
                                        {(!status.is_empty()).then(|| view! { <span class="status">{status}</span> })}
                                    </span>
                                </div>
                            </li>
                        }
                    }
                </For>
                <For each=move || app.pending.get() key=|p| p.key let:p>
                    <li class="msg mine pending">
                        <div class="bubble">
                            <p class="body">{p.body}</p>
                            <span class="meta">
                                <span class="status">"Sending…"</span>
                            </span>
                        </div>
                    </li>
                </For>
            </ul>
        </div>
        <Composer />
    }
}

/// How much of a lost message's text a notice quotes.
const QUOTE_CHARS: usize = 60;

/// The message box, one for every conversation.
///
/// The text of a send that fails is never lost. In the open conversation it
/// goes back into the box (unless the user has typed something else
/// meanwhile); for a conversation the user has left, it waits
/// (`App::unsent`) and is back in the box when they open it again, which the
/// failure's notice says (opening it dismisses the notice). Nobody can write
/// to a deleted account, so there the text is shown above the disabled box
/// instead, to copy or discard (`Unsent`), with what was typed when the
/// account was found deleted.
#[component]
fn Composer() -> impl IntoView {
    let app = use_app();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let deleted = move || app.peer_deleted();
    Effect::new(move |before: Option<(Option<String>, bool)>| {
        let id = app.peer_id.get();
        let gone = deleted();
        match before {
            // The same conversation, whose account was just found deleted:
            // what is in the box moves out, to be copied.
            Some((was, false)) if was == id && gone => {
                let typed = draft.get_untracked();
                if let Some(id) = &id
                    && !typed.trim().is_empty()
                {
                    keep_unsent(app, id, typed);
                }
                draft.set(String::new());
                error.set(None);
            }
            Some((was, _)) if was == id => {}
            // Another conversation: an empty box, or the text of a send to
            // it that failed after the user left it.
            _ => {
                error.set(None);
                let back = id.as_ref().filter(|_| !gone).and_then(|id| {
                    app.unsent
                        .with_untracked(|u| u.contains_key(id))
                        .then(|| app.unsent.try_update(|u| u.remove(id)).flatten())
                        .flatten()
                });
                draft.set(back.unwrap_or_default());
            }
        }
        (id, gone)
    });
    let send = move || {
        let body = draft.get_untracked();
        if body.trim().is_empty()
            || app
                .peer
                .with_untracked(|p| p.as_ref().is_none_or(|p| p.deleted))
        {
            return;
        }
        if let Err(e) = validate::message_body(&body) {
            error.set(Some(sentence(&e.to_string())));
            return;
        }
        error.set(None);
        draft.set(String::new());
        let to = app.peer.get_untracked().unwrap_or_default();
        let sender = app.my_id();
        spawn_local(async move {
            let Err(failure) = app.send(body.clone()).await else {
                return;
            };
            // Logged out meanwhile -- and someone else may have logged in
            // on this page since: the text is not theirs to see.
            if sender.is_empty() || app.my_id() != sender {
                return;
            }
            // This composer serves every conversation: the error and the
            // text go back only to the one the message was for.
            let open = app
                .peer_id
                .with_untracked(|p| p.as_deref() == Some(to.id.as_str()));
            if open && failure.recipient_deleted {
                // The header and the disabled box say why.
                keep_unsent(app, &to.id, body);
            } else if open {
                error.try_set(Some(failure.reason));
                if draft.try_get_untracked().is_some_and(|d| d.is_empty()) {
                    draft.try_set(body);
                } else {
                    keep_unsent(app, &to.id, body);
                }
            } else {
                let name = &to.username;
                let reason = &failure.reason;
                // A deleted account is not in the directory: without a row
                // in the conversations, its conversation cannot be opened
                // again, so the notice holds the whole text.
                let listed = app.conversations.with_untracked(|cs| {
                    cs.iter()
                        .any(|c| c.peer.as_ref().is_some_and(|p| p.id == to.id))
                });
                let text = if !failure.recipient_deleted {
                    format!(
                        "Your message to {name} was not sent. {reason} Its text is back in the \
                         message box of your conversation with {name}."
                    )
                } else if listed {
                    format!(
                        "Your message to {name} was not sent. {reason} Its text, “{}”, is kept \
                         in your conversation with {name}, to copy.",
                        quote(&body)
                    )
                } else {
                    format!("Your message to {name} was not sent. {reason} It said: “{body}”")
                };
                // Kept in the conversation, the text is shown there when it
                // opens again, which dismisses the notice; otherwise the
                // notice is all there is of it, and stays.
                let kept = !failure.recipient_deleted || listed;
                if kept {
                    keep_unsent(app, &to.id, body);
                }
                app.notice.set(Some(Notice {
                    text,
                    warning: true,
                    about: kept.then(|| to.id.clone()),
                }));
            }
        });
    };
    let bytes = move || draft.with(String::len);
    let name = move || {
        app.peer
            .with(|p| p.as_ref().map(|p| p.username.clone()).unwrap_or_default())
    };
    view! {
        <Unsent draft=draft />
        <form
            class="composer"
            on:submit=move |ev: SubmitEvent| {
                ev.prevent_default();
                send();
            }
        >
            <label for="composer" class="sr-only">"Message"</label>
            <textarea
                id="composer"
                rows="2"
                placeholder=move || {
                    if deleted() {
                        "This account has been deleted"
                    } else {
                        "Write a message — Enter to send, Shift+Enter for a new line"
                    }
                }
                disabled=deleted
                aria-describedby=move || deleted().then_some("composer-closed")
                bind:value=draft
                on:keydown=move |ev: KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <button
                type="submit"
                id="send"
                class="primary"
                disabled=move || deleted() || draft.with(|d| d.trim().is_empty())
            >
                "Send"
            </button>
        </form>
        <div class="composer-foot">
            <Show when=deleted>
                <p class="closed small" id="composer-closed">
                    {move || format!("You can no longer write to {}: the account was deleted. This conversation stays readable.", name())}
                </p>
            </Show>
            {move || error.get().map(|e| view! { <p class="error small" id="send-error" role="alert">{e}</p> })}
            <Show when=move || { bytes() > chat_shared::limits::MESSAGE_MAX_BYTES * 3 / 4 }>
                <span
                    class="counter"
                    class:over=move || { bytes() > chat_shared::limits::MESSAGE_MAX_BYTES }
                >
                    {move || format!("{} / {}", bytes(), chat_shared::limits::MESSAGE_MAX_BYTES)}
                </span>
            </Show>
        </div>
    }
}

/// The open conversation's unsent text (`App::unsent`), above the message
/// box: selectable, with Copy (where the browser allows the clipboard),
/// Edit (back into the box, unless the account was deleted) and Discard.
#[component]
fn Unsent(draft: RwSignal<String>) -> impl IntoView {
    let app = use_app();
    // None, or whether the last Copy worked.
    let copied = RwSignal::new(None::<bool>);
    let text = Memo::new(move |_| {
        app.peer_id.with(|id| {
            id.as_ref()
                .and_then(|id| app.unsent.with(|u| u.get(id).cloned()))
        })
    });
    Effect::new(move |_| {
        text.track();
        copied.set(None);
    });
    let deleted = move || app.peer_deleted();
    let take = move || {
        let id = app.peer_id.get_untracked()?;
        app.unsent.try_update(|u| u.remove(&id)).flatten()
    };
    let edit = move |_| {
        if let Some(text) = take() {
            draft.update(|d| {
                *d = if d.is_empty() {
                    text
                } else {
                    format!("{text}\n{d}")
                };
            });
            focus("composer");
        }
    };
    let copy = move |_| {
        let Some(text) = text.get_untracked() else {
            return;
        };
        let Some(window) = web_sys::window() else {
            return;
        };
        let written = window.navigator().clipboard().write_text(&text);
        spawn_local(async move {
            let ok = wasm_bindgen_futures::JsFuture::from(written).await.is_ok();
            copied.try_set(Some(ok));
        });
    };
    // The clipboard is there only on https (or localhost).
    let can_copy = web_sys::window().is_some_and(|w| w.is_secure_context());
    move || {
        text.get().map(|body| {
            view! {
                <section class="unsent" id="unsent" aria-labelledby="unsent-title">
                    <div class="unsent-head">
                        <h3 id="unsent-title">
                            "Your unsent message"
                        </h3>
                        {can_copy.then(|| view! {
                            <button type="button" id="unsent-copy" class="ghost small" on:click=copy>
                                {move || match copied.get() {
                                    None => "Copy",
                                    Some(true) => "Copied",
                                    Some(false) => "Copy failed: select the text",
                                }}
                            </button>
                        })}
                        <Show when=move || !deleted()>
                            <button type="button" id="unsent-edit" class="ghost small" on:click=edit>
                                "Edit"
                            </button>
                        </Show>
                        <button
                            type="button"
                            id="unsent-discard"
                            class="ghost small"
                            on:click=move |_| {
                                take();
                            }
                        >
                            "Discard"
                        </button>
                    </div>
                    <p class="unsent-text" id="unsent-text">{body}</p>
                </section>
            }
        })
    }
}

/// Adds `text` to what `App::unsent` keeps for the conversation with
/// `peer` (after a line break if there is some already).
fn keep_unsent(app: App, peer: &str, text: String) {
    app.unsent.try_update(|u| {
        let kept = u.entry(peer.to_string()).or_default();
        if !kept.is_empty() {
            kept.push('\n');
        }
        kept.push_str(&text);
    });
}

/// The beginning of a message, on one line, for a notice.
fn quote(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= QUOTE_CHARS {
        line
    } else {
        let cut: String = line.chars().take(QUOTE_CHARS).collect();
        format!("{}…", cut.trim_end())
    }
}

/// Moves the focus to the element with this id, if there is one.
fn focus(id: &str) {
    if let Some(el) = document()
        .get_element_by_id(id)
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        _ = el.focus();
    }
}

// --- Dialogs ---------------------------------------------------------------

/// What can take the focus when a dialog opens.
const FOCUSABLE: &str = "input:not(:disabled), textarea:not(:disabled), \
                         button:not(:disabled), [href], [tabindex]:not([tabindex='-1'])";

/// A modal: takes the focus when it opens (its first field or button, else
/// itself), closes on Escape wherever the focus is, and on a click outside
/// it.
#[component]
fn Modal(id: &'static str, title: &'static str, children: Children) -> impl IntoView {
    let app = use_app();
    let title_id = format!("{id}-title");
    let labelled_by = title_id.clone();
    let dialog = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if let Some(el) = dialog.get() {
            let first = el
                .query_selector(FOCUSABLE)
                .ok()
                .flatten()
                .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
            _ = match first {
                Some(first) => first.focus(),
                None => el.focus(),
            };
        }
    });
    let escape = window_event_listener(ev::keydown, move |ev| {
        if ev.key() == "Escape" {
            app.dialog.set(None);
        }
    });
    on_cleanup(move || escape.remove());
    view! {
        <div class="backdrop" on:click=move |_| app.dialog.set(None)>
            <div
                class="modal"
                id=id
                role="dialog"
                aria-modal="true"
                aria-labelledby=labelled_by
                tabindex="-1"
                node_ref=dialog
                on:click=|ev| ev.stop_propagation()
            >
                <h2 id=title_id>{title}</h2>
                {children()}
            </div>
        </div>
    }
}

#[component]
fn ServersPanel() -> impl IntoView {
    let app = use_app();
    // url -> None while checking, Some(None) down, Some(Some(ms)) up.
    let probes = RwSignal::new(HashMap::<String, Option<Option<u32>>>::new());
    let error = RwSignal::new(None::<String>);
    let open = Arc::new(AtomicBool::new(true));
    let alive = Arc::clone(&open);
    on_cleanup(move || open.store(false, Ordering::Relaxed));
    spawn_local(async move {
        while alive.load(Ordering::Relaxed) {
            let urls: Vec<String> = app
                .servers
                .get_untracked()
                .into_iter()
                .map(|s| s.url)
                .collect();
            for url in urls {
                let result = net::probe(&url).await;
                if !alive.load(Ordering::Relaxed) {
                    return;
                }
                probes.update(|p| {
                    p.insert(url, Some(result));
                });
            }
            gloo_timers::future::TimeoutFuture::new(2000).await;
        }
    });
    let in_use = move || match app.connection.get() {
        Connection::Connected(s) => s.id,
        _ => 0,
    };
    view! {
        <Modal id="servers-panel" title="Servers">
            <p class="muted">
                "Every replica holds every conversation. The app talks to one at a time and moves to the next by itself when it stops answering; you can also pick one here."
            </p>
            <ul class="servers">
                <For
                    each=move || app.servers.get()
                    key=|s| (s.id, s.url.clone())
                    let:s
                >
                    {
                        let url = s.url.clone();
                        let probe_url = s.url.clone();
                        let id = s.id;
                        let probe = move || probes.with(|p| p.get(&probe_url).cloned().flatten());
                        let state = Signal::derive(move || match probe() {
                            None => ("checking", "Checking…".to_string()),
                            Some(Some(ms)) => ("up", format!("Up · {ms} ms")),
                            Some(None) => ("down", "Down".to_string()),
                        });
                        view! {
                            <li class="server" data-id=id.to_string() data-state=move || state.get().0>
                                <span class=move || format!("dot {}", state.get().0) aria-hidden="true"></span>
                                <span class="row-main">
                                    <span class="row-title">{capitalize(&s.name())}</span>
                                    <span class="row-sub url">{s.url.clone()}</span>
                                </span>
                                <span class="server-state">{move || state.get().1}</span>
                                <Show
                                    when=move || in_use() == id
                                    fallback={
                                        let url = url.clone();
                                        move || {
                                            let url = url.clone();
                                            view! {
                                                <button
                                                    class="use-server"
                                                    disabled=move || state.get().0 == "down"
                                                    on:click=move |_| {
                                                        let url = url.clone();
                                                        spawn_local(async move {
                                                            error.set(app.switch_server(url).await.err());
                                                        });
                                                    }
                                                >
                                                    "Use"
                                                </button>
                                            }
                                        }
                                    }
                                >
                                    <span class="pill">"In use"</span>
                                </Show>
                            </li>
                        }
                    }
                </For>
            </ul>
            {move || error.get().map(|e| view! { <p class="error small" role="alert">{e}</p> })}
            <div class="actions">
                <button class="primary" id="servers-close" on:click=move |_| app.dialog.set(None)>
                    "Close"
                </button>
            </div>
        </Modal>
    }
}

#[component]
fn ChangePasswordDialog() -> impl IntoView {
    let app = use_app();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let show = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let (old, new_pass) = (current.get_untracked(), new.get_untracked());
        let problem = if old.is_empty() {
            Some("Enter your current password.".to_string())
        } else if let Err(e) = validate::password(&new_pass) {
            Some(sentence(&e.to_string()))
        } else if new_pass != repeat.get_untracked() {
            Some("The new password and its repetition differ.".to_string())
        } else {
            None
        };
        if let Some(p) = problem {
            error.set(Some(p));
            return;
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            // On success the dialog closes with a notice.
            if let Err(e) = app.change_password(old, new_pass).await {
                busy.set(false);
                error.set(Some(e));
            }
        });
    };
    let sign_out_others = move |_| {
        if busy.get_untracked() {
            return;
        }
        let password = current.get_untracked();
        if password.is_empty() {
            error.set(Some(
                "Enter your current password to sign out your other devices.".into(),
            ));
            return;
        }
        error.set(None);
        busy.set(true);
        spawn_local(async move {
            if let Err(e) = app.sign_out_other_devices(password).await {
                busy.set(false);
                error.set(Some(e));
            }
        });
    };
    let kind = move || if show.get() { "text" } else { "password" };
    view! {
        <Modal id="password-dialog" title="Change your password">
            <p>"Every other session of your account ends: other tabs and devices will ask to log in again."</p>
            <form on:submit=submit novalidate>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type=kind autocomplete="current-password" bind:value=current />
                <label for="new-password">"New password"</label>
                <input id="new-password" type=kind autocomplete="new-password" bind:value=new />
                <p class="hint">"At least 8 characters."</p>
                <label for="repeat-password">"New password again"</label>
                <input id="repeat-password" type=kind autocomplete="new-password" bind:value=repeat />
                <label class="check">
                    <input type="checkbox" id="password-show" bind:checked=show />
                    "Show passwords"
                </label>
                <p class="hint">
                    "Lost a device? "
                    <button type="button" id="sign-out-others" class="link" disabled=busy on:click=sign_out_others>
                        "Sign out other devices"
                    </button>
                    " with your current password and keep it."
                </p>
                {move || error.get().map(|e| view! { <p class="error" id="password-error" role="alert">{e}</p> })}
                <div class="actions">
                    <button type="button" class="ghost" on:click=move |_| app.dialog.set(None)>
                        "Cancel"
                    </button>
                    <button type="submit" id="confirm-change-password" class="primary" disabled=busy>
                        {move || if busy.get() { "Please wait…" } else { "Change password" }}
                    </button>
                </div>
            </form>
        </Modal>
    }
}

#[component]
fn DeleteAccountDialog() -> impl IntoView {
    let app = use_app();
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let pass = password.get_untracked();
        if pass.is_empty() {
            error.set(Some("Enter your password to confirm.".into()));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            let result = app.delete_account(pass).await;
            // On success the dialog is gone with the session.
            if let Err(e) = result {
                busy.set(false);
                error.set(Some(e));
            }
        });
    };
    view! {
        <Modal id="delete-dialog" title="Delete your account?">
            <p>
                "This cannot be undone. Your username is retired for good and every session of this account ends. Messages you sent stay with the people you sent them to."
            </p>
            <form on:submit=submit novalidate>
                <label for="delete-password">"Type your password to confirm"</label>
                <input
                    id="delete-password"
                    type="password"
                    autocomplete="current-password"
                    bind:value=password
                />
                {move || error.get().map(|e| view! { <p class="error" id="delete-error" role="alert">{e}</p> })}
                <div class="actions">
                    <button type="button" class="ghost" on:click=move |_| app.dialog.set(None)>
                        "Cancel"
                    </button>
                    <button type="submit" id="confirm-delete-account" class="danger" disabled=busy>
                        "Delete my account"
                    </button>
                </div>
            </form>
        </Modal>
    }
}

// --- Helpers -----------------------------------------------------------------

fn initial(name: &str) -> String {
    name.chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default()
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// "14:05", in the browser's time zone.
fn time_of_day(ms: i64) -> String {
    let at = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    format!("{:02}:{:02}", at.get_hours(), at.get_minutes())
}

/// The date and time in the browser's own format, for a tooltip.
fn full_date(ms: i64) -> String {
    let at = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    String::from(at.to_locale_string("default", &JsValue::UNDEFINED))
}

/// When a conversation's newest message was sent: "14:05" today,
/// "Yesterday", "3 Mar" before (`days::list_label`), seen on `today`
/// (`App::today`).
fn clock(ms: i64, (today, yesterday): (Day, Day)) -> String {
    if ms <= 0 {
        return String::new();
    }
    days::list_label(Day::of(ms), today, yesterday, &time_of_day(ms))
}
