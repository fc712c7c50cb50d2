//! DeleteMessages: delete messages the caller sent or received, for both
//! parties, for good.

use chat_shared::proto::{DeleteMessagesRequest, DeleteMessagesResponse};
use tonic::Request;

use super::{ApiError, Context, parse_ids, request_id};
use crate::state::{Command, query};

pub async fn handle(
    ctx: &Context,
    req: Request<DeleteMessagesRequest>,
) -> Result<DeleteMessagesResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let rid = request_id(&req.request_id)?;
    let messages = parse_ids(&req.message_ids)?;
    ctx.writer
        .submit(
            rid,
            Command::DeleteMessages {
                account: session.account,
                messages,
            },
        )
        .await?;
    Ok(DeleteMessagesResponse {
        unread_count: query::unread_count(&ctx.store.reader(), session.account)?,
    })
}
