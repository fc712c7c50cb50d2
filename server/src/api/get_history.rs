//! GetHistory: the conversation with one peer, newest first, by cursor.

use chat_shared::limits::{HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX};
use chat_shared::proto::{GetHistoryRequest, GetHistoryResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, MessageBuilder, cursor};
use crate::ids::AccountId;
use crate::state::{CommandError, query};

pub async fn handle(
    ctx: &Context,
    req: Request<GetHistoryRequest>,
) -> Result<GetHistoryResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let peer: AccountId = req.peer_id.parse()?;
    let size = validate::page_size(req.page_size, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX)?;
    let before = cursor::decode_position(&req.cursor)?;
    let kv = ctx.store.reader();
    if query::account(&kv, peer)?.is_none() {
        return Err(CommandError::UnknownAccount(peer).into());
    }
    let (page, next) = query::history(&kv, session.account, peer, before, size as usize)?;
    let mut build = MessageBuilder::new(&kv);
    Ok(GetHistoryResponse {
        messages: page
            .iter()
            .map(|(id, rec)| build.message(*id, rec))
            .collect::<Result<_, _>>()?,
        next_cursor: next.map(cursor::encode_position).unwrap_or_default(),
    })
}
