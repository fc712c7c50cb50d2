//! ListUnread: up to N unread messages addressed to the caller, oldest
//! first, without marking them read.

use chat_shared::limits::{UNREAD_PAGE_DEFAULT, UNREAD_PAGE_MAX};
use chat_shared::proto::{ListUnreadRequest, ListUnreadResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, MessageBuilder};
use crate::state::query;

pub async fn handle(
    ctx: &Context,
    req: Request<ListUnreadRequest>,
) -> Result<ListUnreadResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let limit = validate::page_size(req.get_ref().limit, UNREAD_PAGE_DEFAULT, UNREAD_PAGE_MAX)?;
    let kv = ctx.store.reader();
    let mut build = MessageBuilder::new(&kv);
    let messages = query::unread_messages(&kv, session.account, limit as usize)?
        .iter()
        .map(|(id, rec)| build.message(*id, rec))
        .collect::<Result<_, _>>()?;
    Ok(ListUnreadResponse {
        messages,
        unread_count: query::unread_count(&kv, session.account)?,
    })
}
