//! SendMessage: store a direct message, durably on every live replica,
//! exactly once however often the client retries it.

use chat_shared::proto::{SendMessageRequest, SendMessageResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, MessageBuilder, request_id};
use crate::ids::{AccountId, MessageId};
use crate::state::{Command, query};

pub async fn handle(
    ctx: &Context,
    req: Request<SendMessageRequest>,
) -> Result<SendMessageResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let rid = request_id(&req.request_id)?;
    let recipient: AccountId = req.recipient_id.parse()?;
    validate::message_body(&req.body)?;
    ctx.writer
        .submit(
            rid,
            Command::SendMessage {
                sender: session.account,
                recipient,
                body: req.body,
            },
        )
        .await?;
    let id = MessageId::derive(session.account, recipient, &rid);
    let kv = ctx.store.reader();
    let Some(rec) = query::live_message(&kv, id)? else {
        return Err(ApiError::Gone(format!(
            "message {id} was sent by an earlier attempt of this request and has since been deleted"
        )));
    };
    Ok(SendMessageResponse {
        message: Some(MessageBuilder::new(&kv).message(id, &rec)?),
    })
}
