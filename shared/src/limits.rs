//! Every limit of the service, in one place.
//!
//! The server enforces these on every request (see `validate`); clients use
//! the same constants to reject bad input early and to size their pages.
//! `docs/limits.md` lists them for humans; keep the two in step.

/// Shortest username, in characters.
pub const USERNAME_MIN_CHARS: usize = 3;
/// Longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 32;

/// Shortest password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password, in bytes (UTF-8). Bounds the cost of hashing.
pub const PASSWORD_MAX_BYTES: usize = 256;

/// Longest message body, in bytes (UTF-8).
pub const MESSAGE_MAX_BYTES: usize = 4096;

/// Longest account-search pattern, in characters.
pub const PATTERN_MAX_CHARS: usize = 64;

/// Accounts per `ListAccounts` page: default and maximum.
pub const ACCOUNTS_PAGE_DEFAULT: u32 = 50;
pub const ACCOUNTS_PAGE_MAX: u32 = 200;

/// Messages per `GetHistory` page: default and maximum.
pub const HISTORY_PAGE_DEFAULT: u32 = 50;
pub const HISTORY_PAGE_MAX: u32 = 200;

/// Messages per `ListUnread` call: default and maximum.
pub const UNREAD_PAGE_DEFAULT: u32 = 100;
pub const UNREAD_PAGE_MAX: u32 = 500;

/// Conversations per `ListConversations` page: default and maximum.
pub const CONVERSATIONS_PAGE_DEFAULT: u32 = 50;
pub const CONVERSATIONS_PAGE_MAX: u32 = 200;

/// Message ids in one `MarkRead` or `DeleteMessages` request.
pub const IDS_PER_REQUEST_MAX: usize = 500;

/// Live `Subscribe` streams one account may hold open on one replica (a
/// browser tab or device needs one): enough for any person, a bound on what
/// one session can make a replica buffer.
pub const SUBSCRIPTIONS_PER_ACCOUNT: usize = 32;

/// Length of a client request id, in bytes.
pub const REQUEST_ID_BYTES: usize = 16;

/// Largest encoded request the client API accepts, in bytes. Above every
/// request the other limits allow (500 ids of 32 hex characters, a 4 KiB
/// body), far below anything that could hurt a replica.
pub const REQUEST_MAX_BYTES: usize = 64 * 1024;
