//! MarkRead: mark messages addressed to the caller as read.

use chat_shared::proto::{MarkReadRequest, MarkReadResponse};
use tonic::Request;

use super::{ApiError, Context, parse_ids, request_id};
use crate::state::{Command, query};

pub async fn handle(
    ctx: &Context,
    req: Request<MarkReadRequest>,
) -> Result<MarkReadResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let rid = request_id(&req.request_id)?;
    let messages = parse_ids(&req.message_ids)?;
    ctx.writer
        .submit(
            rid,
            Command::MarkRead {
                account: session.account,
                messages,
            },
        )
        .await?;
    Ok(MarkReadResponse {
        unread_count: query::unread_count(&ctx.store.reader(), session.account)?,
    })
}
