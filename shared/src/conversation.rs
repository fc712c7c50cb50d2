//! A conversation's order, as every replica keeps it: by (`order`, `id`).
//!
//! A client that merges history pages and live events into one list must
//! sort the same way, or two messages sent within one millisecond -- common
//! from a fast sender -- swap places: `sent_at_ms` cannot tell them apart,
//! and the ids that break the tie are not in sending order.

use crate::proto::Message;

/// Puts `message` in its place in `messages` (oldest first), or replaces
/// the copy already there (a read flag changed).
pub fn upsert(messages: &mut Vec<Message>, message: Message) {
    if let Some(existing) = messages.iter_mut().find(|m| m.id == message.id) {
        *existing = message;
        return;
    }
    let at = messages.partition_point(|m| (m.order, &m.id) < (message.order, &message.id));
    messages.insert(at, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, sent_at_ms: i64, order: u64) -> Message {
        Message {
            id: id.into(),
            sent_at_ms,
            order,
            ..Default::default()
        }
    }

    fn ids(ms: &[Message]) -> Vec<&str> {
        ms.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn messages_of_one_millisecond_keep_their_sending_order() {
        // Three sends in the same millisecond, with ids against their order;
        // arriving newest first (as history pages do).
        let mut ms = Vec::new();
        upsert(&mut ms, msg("a", 1000, 1000 << 16 | 2));
        upsert(&mut ms, msg("c", 1000, 1000 << 16 | 1));
        upsert(&mut ms, msg("b", 1000, 1000 << 16));
        assert_eq!(ids(&ms), ["b", "c", "a"]);
        // A live event of a later millisecond goes last.
        upsert(&mut ms, msg("0", 1001, 1001 << 16));
        assert_eq!(ids(&ms), ["b", "c", "a", "0"]);
    }

    #[test]
    fn equal_orders_fall_back_to_the_id_and_a_known_message_is_replaced() {
        let mut ms = vec![msg("x", 5, 7), msg("z", 5, 7)];
        upsert(&mut ms, msg("y", 5, 7));
        assert_eq!(ids(&ms), ["x", "y", "z"]);
        let mut read = msg("y", 5, 7);
        read.read = true;
        upsert(&mut ms, read);
        assert_eq!(ids(&ms), ["x", "y", "z"]);
        assert!(ms[1].read);
    }
}
