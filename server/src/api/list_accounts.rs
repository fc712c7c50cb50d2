//! ListAccounts: the account directory, searched by wildcard pattern.

use chat_shared::limits::{ACCOUNTS_PAGE_DEFAULT, ACCOUNTS_PAGE_MAX};
use chat_shared::proto::{ListAccountsRequest, ListAccountsResponse};
use chat_shared::validate;
use tonic::Request;

use super::{ApiError, Context, account_proto, cursor};
use crate::state::query;

pub async fn handle(
    ctx: &Context,
    req: Request<ListAccountsRequest>,
) -> Result<ListAccountsResponse, ApiError> {
    ctx.authenticate(&req)?;
    let req = req.into_inner();
    validate::pattern(&req.pattern)?;
    let pattern = if req.pattern.is_empty() {
        "*"
    } else {
        &req.pattern
    };
    let size = validate::page_size(req.page_size, ACCOUNTS_PAGE_DEFAULT, ACCOUNTS_PAGE_MAX)?;
    let after = cursor::decode_name(&req.cursor)?;
    let kv = ctx.store.reader();
    let (page, next) = query::list_accounts(&kv, pattern, after.as_deref(), size as usize)?;
    Ok(ListAccountsResponse {
        accounts: page
            .iter()
            .map(|(id, rec)| account_proto(*id, rec))
            .collect(),
        next_cursor: next.map(|n| cursor::encode_name(&n)).unwrap_or_default(),
    })
}
