//! `subscriptions/listen` (2026-07-28) over several targets: the client's one listen
//! request opens a listen stream on every target, and the merged stream must read as
//! one server's. Each target's stream opens with `notifications/subscriptions/acknowledged`
//! (the notification kinds it will send) and may close with the request's result. The
//! client gets one acknowledgement (the union of what every target honours, sent once
//! every open stream acknowledged, with the events that came meanwhile right after it),
//! every notification, and one result when the last stream ends.
//!
//! Pure bookkeeping over parsed SSE events; `events::merge` drives it.

use serde_json::{Map, Value};

use crate::llm::SseEvent;

const ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// The merge state of one client's listen stream.
#[derive(Debug)]
pub struct ListenMerge {
    /// Per target stream (by position at the start): whether it acknowledged or ended.
    settled: Vec<bool>,
    /// The acknowledgement so far (the first one's, its `notifications` united).
    ack: Option<Value>,
    ack_sent: bool,
    /// Events that came before the acknowledgement went out.
    held: Vec<SseEvent>,
    /// A target's closing result, sent when the last stream ends.
    result: Option<SseEvent>,
}

impl ListenMerge {
    /// The state for `streams` target streams, numbered `0..streams`.
    pub fn new(streams: usize) -> Self {
        ListenMerge {
            settled: vec![false; streams],
            ack: None,
            ack_sent: false,
            held: Vec::new(),
            result: None,
        }
    }

    /// Stream `at`'s `event`; what goes to the client now.
    pub fn event(&mut self, at: usize, event: SseEvent) -> Vec<SseEvent> {
        let message: Option<Value> = serde_json::from_str(&event.data).ok();
        let method = message.as_ref().and_then(|m| m.get("method")?.as_str());
        match (method, &message) {
            (Some(ACKNOWLEDGED), Some(message)) => {
                self.unite(message);
                self.settle(at)
            }
            (None, Some(m)) if m.get("id").is_some() => {
                self.result = Some(event);
                Vec::new()
            }
            _ if self.ack_sent => vec![event],
            _ => {
                self.held.push(event);
                Vec::new()
            }
        }
    }

    /// Stream `at` ended; what goes to the client now (everything, when `last`).
    pub fn ended(&mut self, at: usize, last: bool) -> Vec<SseEvent> {
        let mut out = self.settle(at);
        if last {
            if !self.ack_sent {
                out.extend(self.release());
            }
            out.extend(self.result.take());
        }
        out
    }

    fn settle(&mut self, at: usize) -> Vec<SseEvent> {
        if let Some(s) = self.settled.get_mut(at) {
            *s = true;
        }
        if self.ack_sent || !self.settled.iter().all(|s| *s) {
            return Vec::new();
        }
        self.release()
    }

    /// The acknowledgement (if any came) and the events held behind it.
    fn release(&mut self) -> Vec<SseEvent> {
        self.ack_sent = true;
        let mut out: Vec<SseEvent> = self
            .ack
            .take()
            .map(|ack| SseEvent {
                event: None,
                data: ack.to_string(),
                id: None,
                retry: None,
            })
            .into_iter()
            .collect();
        out.append(&mut self.held);
        out
    }

    /// Adds an acknowledgement's honoured kinds to the one the client will get.
    fn unite(&mut self, message: &Value) {
        let Some(ack) = &mut self.ack else {
            self.ack = Some(message.clone());
            return;
        };
        let (Some(Value::Object(into)), Some(Value::Object(from))) = (
            ack.pointer_mut("/params/notifications"),
            message.pointer("/params/notifications"),
        ) else {
            return;
        };
        unite_filter(into, from);
    }
}

/// `from`'s kinds added to `into`: flags or-ed, lists (resource URIs) joined.
fn unite_filter(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(Value::Bool(a)), Value::Bool(b)) => *a |= b,
            (Some(Value::Array(a)), Value::Array(b)) => {
                for item in b {
                    if !a.contains(item) {
                        a.push(item.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sse(value: Value) -> SseEvent {
        SseEvent {
            event: None,
            data: value.to_string(),
            id: None,
            retry: None,
        }
    }

    fn ack(notifications: Value) -> SseEvent {
        sse(json!({"jsonrpc": "2.0", "method": ACKNOWLEDGED, "params": {
            "notifications": notifications,
            "_meta": {"io.modelcontextprotocol/subscriptionId": 4},
        }}))
    }

    fn changed(kind: &str) -> SseEvent {
        sse(json!({"jsonrpc": "2.0", "method": format!("notifications/{kind}/list_changed")}))
    }

    fn data(events: &[SseEvent]) -> Vec<Value> {
        events
            .iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    #[test]
    fn one_united_acknowledgement_first_then_every_event_then_one_result() {
        let mut m = ListenMerge::new(2);
        assert!(m
            .event(
                0,
                ack(json!({"toolsListChanged": true, "resourceSubscriptions": ["a://x"]}))
            )
            .is_empty());
        // Target 0's event waits for target 1's acknowledgement.
        assert!(m.event(0, changed("tools")).is_empty());
        let out = data(&m.event(1, ack(json!({"promptsListChanged": true, "toolsListChanged": false, "resourceSubscriptions": ["b://y"]}))));
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0]["params"]["notifications"],
            json!({"toolsListChanged": true, "promptsListChanged": true, "resourceSubscriptions": ["a://x", "b://y"]})
        );
        assert_eq!(out[1]["method"], "notifications/tools/list_changed");
        assert_eq!(
            data(&m.event(1, changed("prompts")))[0]["method"],
            "notifications/prompts/list_changed"
        );
        // Each target's closing result is held; one goes out when the last stream ends.
        let result = sse(json!({"jsonrpc": "2.0", "id": 4, "result": {}}));
        assert!(m.event(0, result.clone()).is_empty());
        assert!(m.ended(0, false).is_empty());
        assert!(m.event(1, result).is_empty());
        assert_eq!(
            data(&m.ended(1, true)),
            vec![json!({"jsonrpc": "2.0", "id": 4, "result": {}})]
        );
    }

    #[test]
    fn a_stream_that_ends_unacknowledged_does_not_hold_the_others() {
        let mut m = ListenMerge::new(2);
        assert!(m
            .event(0, ack(json!({"toolsListChanged": true})))
            .is_empty());
        let out = data(&m.ended(1, false));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["method"], ACKNOWLEDGED);
        assert_eq!(data(&m.event(0, changed("tools"))).len(), 1);
    }
}
