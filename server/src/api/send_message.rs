//! SendMessage: store a direct message, durably on every live replica,
//! exactly once however often the client retries it.

use chat_shared::proto::{SendMessageRequest, SendMessageResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, MessageBuilder, account_proto, message_proto, request_id};
use crate::ids::{AccountId, MessageId};
use crate::state::Command;
use crate::state::query::{self, Receipt};
use crate::writer::Outcome;

pub async fn handle(
    ctx: &Context,
    req: Request<SendMessageRequest>,
) -> Result<SendMessageResponse, ApiError> {
    let session = ctx.authenticate(&req)?;
    let req = req.into_inner();
    let rid = request_id(&req.request_id)?;
    let recipient: AccountId = req.recipient_id.parse()?;
    validate::message_body(&req.body)?;
    let outcome = ctx
        .writer
        .submit(
            rid,
            Command::SendMessage {
                sender: session.account,
                recipient,
                body: req.body,
            },
        )
        .await?;
    // Usually the writer hands back the message as stored; a retry of a
    // request already done here reads it from the store.
    if let Outcome::Applied(_, receipt) = outcome
        && let Receipt::Message {
            id,
            record,
            recipient: recipient_record,
        } = *receipt
    {
        let sender = account_proto(session.account, &session.record);
        let recipient = account_proto(record.recipient, &recipient_record);
        return Ok(SendMessageResponse {
            message: Some(message_proto(id, &record, sender, recipient)),
        });
    }
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
