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

    /// The pool scores prefixes on its members' KV events (and so tokenizes whole
    /// prompts).
    pub fn reads_kv_events(&self) -> bool {
        self.policy.prefix_cache.is_some()
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use crate::config::EndpointPickerPolicy;
    use crate::epp::kv_events::endpoint::test_frames;
    use crate::epp::kv_events::index::prompt_keys;
    use crate::epp::{PickRequest, Pool};

    #[test]
    fn a_pick_scores_fresh_publishers_from_their_events() {
        let policy: EndpointPickerPolicy = serde_yaml::from_str(
            "{endpoints: ['127.0.0.1:1', '127.0.0.1:2'],
              scheduling: {scorers: [{type: prefixCache, weight: 1}]},
              prefixCache: {mode: kvEvents, blockSize: 2}}",
        )
        .unwrap();
        let pool = Pool::from_policy(&policy, "p").unwrap();
        pool.sync_kv_events(); // outside a runtime: the state, no subscriber task
        let kv = pool.policy().prefix_cache.clone().unwrap();
        let holder = "127.0.0.1:2".parse().unwrap();
        let stored = json!([
            1.0,
            [["BlockStored", [1, 2, 3], null, [1, 2, 3, 4, 5, 6], 2]]
        ]);
        kv.events(&holder)
            .unwrap()
            .receive(&test_frames(0, stored), Instant::now())
            .unwrap();
        // 4 approximate blocks of text; the keys of 4 token blocks, 3 of them held.
        let prompt = "x".repeat(256);
        let keys = prompt_keys(&[1, 2, 3, 4, 5, 6, 7, 8], 2, None, 100);
        for i in 0..5 {
            let mut req = PickRequest::new("m", prompt.as_bytes());
            req.block_keys = Some(&keys);
            let picked = pool.pick(&req).unwrap();
            assert_eq!(picked.endpoint(), "127.0.0.1:2");
            // From the second pick on, the first one's keys count as held there
            // (speculative indexing) until the events confirm them or 2 s after its prefill.
            let matched = if i == 0 { 3 } else { 4 };
            assert_eq!((picked.prefix_matched, picked.blocks), (matched, 4));
        }
        // The approximate index recorded those picks; without keys it decides alone.
        let picked = pool
            .pick(&PickRequest::new("m", prompt.as_bytes()))
            .unwrap();
        assert_eq!(
            (picked.endpoint(), picked.prefix_matched),
            ("127.0.0.1:2", 4)
        );
    }

    #[test]
    fn a_picks_guess_holds_until_its_first_token_and_the_ttl_after() {
        let policy: EndpointPickerPolicy = serde_yaml::from_str(
            "{endpoints: ['127.0.0.1:1'],
              prefixCache: {mode: kvEvents, blockSize: 2, kvEvents: {staleAfter: 600s}}}",
        )
        .unwrap();
        let pool = Pool::from_policy(&policy, "p").unwrap();
        pool.sync_kv_events();
        let kv = pool.policy().prefix_cache.clone().unwrap();
        let events = kv.events(&"127.0.0.1:1".parse().unwrap()).unwrap();
        events
            .receive(&test_frames(0, json!([1.0, []])), Instant::now())
            .unwrap();
        let keys = prompt_keys(&[1, 2, 3, 4], 2, None, 100);
        let prompt = "x".repeat(256);
        let mut req = PickRequest::new("m", prompt.as_bytes());
        req.block_keys = Some(&keys);
        let mut picked = pool.pick(&req).unwrap();
        let stale = Duration::from_secs(600);
        let later = Instant::now() + Duration::from_secs(300);
        assert_eq!(
            events.matched(&keys, stale, later),
            Some(2),
            "still prefilling"
        );
        picked.in_flight.first_token(Instant::now());
        let after = Instant::now() + Duration::from_secs(3);
        assert_eq!(
            events.matched(&keys, stale, after),
            Some(0),
            "2 s after its first token"
        );
    }

    #[test]
    fn approximate_mode_has_no_keys() {
        let policy: EndpointPickerPolicy =
            serde_yaml::from_str("{endpoints: ['127.0.0.1:1']}").unwrap();
        let pool = Pool::from_policy(&policy, "p").unwrap();
        assert!(pool.policy().prefix_cache.is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            rt.block_on(pool.prompt_block_keys("m", &[b'x'; 256], None)),
            None
        );
    }
}
