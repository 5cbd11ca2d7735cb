//! The pool's side of the precise prefix cache (`crate::epp::kv_events`): keeping the
//! subscriptions in step with the members, and tokenizing a prompt before the pick.

use std::time::Instant;

use super::Pool;

impl Pool {
    /// Subscribes to the current members' KV events and drops those of endpoints that
    /// left; a no-op in `approximate` mode.
    pub(super) fn sync_kv_events(&self) {
        if let Some(kv) = &self.policy.prefix_cache {
            kv.sync(self.membership.current.load().iter().map(|e| e.addr));
        }
    }

    /// The exact block keys of `prompt` for `model`, for [`super::PickRequest::block_keys`]:
    /// `None` in `approximate` mode, when no member publishes, or when tokenizing failed
    /// (the pick then uses the approximate index). `chat_body` is the body of a chat
    /// completion (its messages are tokenized with the server's chat template).
    pub async fn prompt_block_keys(
        &self,
        model: &str,
        prompt: &[u8],
        chat_body: Option<&[u8]>,
    ) -> Option<Vec<u64>> {
        let kv = self.policy.prefix_cache.as_ref()?;
        kv.block_keys(model, prompt, chat_body, Instant::now())
            .await
    }
}
