//! ListConversations: the caller's conversations, most recent first, with
//! unread counts and the newest message of each.
//!
//! Ordered by activity, which changes as messages arrive: a conversation
//! that becomes active while a client pages moves to the front, and that
//! client sees it when it reloads the first page (documented in
//! docs/protocol.md).

use chat_shared::limits::{CONVERSATIONS_PAGE_DEFAULT, CONVERSATIONS_PAGE_MAX};
use chat_shared::proto::{Conversation, ListConversationsRequest, ListConversationsResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, MessageBuilder, cursor};
use crate::state::query;

pub async fn handle(
    ctx: &Context,
    req: Request<ListConversationsRequest>,
) -> Result<ListConversationsResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let size = validate::page_size(
        req.page_size,
        CONVERSATIONS_PAGE_DEFAULT,
        CONVERSATIONS_PAGE_MAX,
    )? as usize;
    let after = cursor::decode_conversation(&req.cursor)?;
    let kv = ctx.store.reader();
    let mut convs: Vec<_> = query::conversations(&kv, session.account)?
        .into_iter()
        .map(|(peer, c)| ((c.last.map_or(0, |(hlc, _)| hlc), peer), c))
        .filter(|(pos, _)| after.is_none_or(|a| *pos < a))
        .collect();
    convs.sort_by_key(|(pos, _)| std::cmp::Reverse(*pos));
    let next = (convs.len() > size).then(|| convs[size - 1].0);
    convs.truncate(size);
    let mut build = MessageBuilder::new(&kv);
    let mut out = Vec::with_capacity(convs.len());
    for ((_, peer), c) in convs {
        let last_message = match c.last {
            Some((_, id)) => match query::live_message(&kv, id)? {
                Some(rec) => Some(build.message(id, &rec)?),
                None => None,
            },
            None => None,
        };
        out.push(Conversation {
            peer: Some(build.account(peer)?),
            unread_count: c.unread,
            message_count: c.total,
            last_message,
        });
    }
    Ok(ListConversationsResponse {
        conversations: out,
        next_cursor: next
            .map(|(hlc, peer)| cursor::encode_conversation(hlc, peer))
            .unwrap_or_default(),
    })
}
