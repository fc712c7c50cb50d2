//! Paging cursors: opaque hex strings to clients, typed positions inside.

use super::error::ApiError;
use crate::ids::{AccountId, MessageId};
use crate::state::query::Position;

/// Encodes a position in a message index: (hlc, message id).
pub fn encode_position((hlc, id): Position) -> String {
    let mut b = hlc.to_be_bytes().to_vec();
    b.extend_from_slice(&id.0);
    hex::encode(b)
}

pub fn decode_position(cursor: &str) -> Result<Option<Position>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let b = hex::decode(cursor).map_err(|_| ApiError::BadCursor)?;
    if b.len() != 24 {
        return Err(ApiError::BadCursor);
    }
    let hlc = u64::from_be_bytes(b[..8].try_into().map_err(|_| ApiError::BadCursor)?);
    let id = MessageId::from_slice(&b[8..]).ok_or(ApiError::BadCursor)?;
    Ok(Some((hlc, id)))
}

/// Encodes a conversation position: (last activity hlc, peer id).
pub fn encode_conversation(hlc: u64, peer: AccountId) -> String {
    encode_position((hlc, MessageId(peer.0)))
}

pub fn decode_conversation(cursor: &str) -> Result<Option<(u64, AccountId)>, ApiError> {
    Ok(decode_position(cursor)?.map(|(hlc, id)| (hlc, AccountId(id.0))))
}

/// Encodes an account-directory position: the last normalized username.
pub fn encode_name(name: &str) -> String {
    hex::encode(name)
}

pub fn decode_name(cursor: &str) -> Result<Option<String>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let b = hex::decode(cursor).map_err(|_| ApiError::BadCursor)?;
    let name = String::from_utf8(b).map_err(|_| ApiError::BadCursor)?;
    chat_shared::validate::username(&name).map_err(|_| ApiError::BadCursor)?;
    Ok(Some(name))
}
